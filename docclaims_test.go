package esmill_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// claimWords are the words that make a sentence a guarantee a user relies
// on; such a sentence must name the tests that prove it, as
// "(tested: TestA, TestB)".
var claimWords = regexp.MustCompile(`(?i)\b(pinned|exactly[- ]once|never|bounded)\b`)

var testedRef = regexp.MustCompile(`(?:\(|;\s*)tested:([^)]*)\)`)

var testName = regexp.MustCompile(`\b(Test|Fuzz|Example)[A-Za-z0-9_]*`)

// TestDocClaimsNameTheirTests enforces the rule of the briefing and of
// issue 18: no file of the repository calls something "pinned", "exactly
// once", "never" or "bounded" without a "(tested: ...)" in the same
// sentence naming test functions that exist in the workspace.
//
// It reads every Markdown file but the changelog (history, not claims), and
// every comment of every non-test Go file of every module (doc comments,
// comments inside functions and at the end of a line), generated files and
// testdata excepted. Comments in _test.go files are the tests themselves.
//
// There is no list of exceptions: a claim word is taken as a guarantee.
// Where a comment only describes (a field set by tests only, a write that
// was not acknowledged, a helper that gives up when its context ends), say
// it without the claim words ("not", "no", "up to", "until ctx ends");
// where it promises, name the test that would fail if the promise broke.
func TestDocClaimsNameTheirTests(t *testing.T) {
	tests := testFunctions(t)
	var docs []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != "." && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case strings.HasSuffix(path, ".md") && d.Name() != "CHANGELOG.md":
			docs = append(docs, path)
		case strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go"):
			docs = append(docs, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(docs)
	claims, bad := 0, 0
	for _, path := range docs {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if strings.HasSuffix(path, ".go") {
			if generatedGo.MatchString(text) {
				continue
			}
			text = goComments(t, path, b)
		} else {
			text = stripCodeBlocks(text)
		}
		for _, s := range sentences(text) {
			if !claimWords.MatchString(s) {
				continue
			}
			claims++
			refs := testedRef.FindAllStringSubmatch(s, -1)
			var names []string
			for _, r := range refs {
				names = append(names, testName.FindAllString(r[1], -1)...)
			}
			var missing []string
			for _, n := range names {
				if !tests[n] {
					missing = append(missing, n)
				}
			}
			switch {
			case len(names) == 0:
				bad++
				t.Errorf("%s: a claim without \"(tested: TestX)\": %q", path, oneLine(s))
			case len(missing) > 0:
				bad++
				t.Errorf("%s: names tests that do not exist (%s): %q", path, strings.Join(missing, ", "), oneLine(s))
			}
		}
	}
	t.Logf("%d documents, %d sentences with a claim word, %d without a test", len(docs), claims, bad)
	if claims == 0 {
		t.Fatal("no claim found at all: the scan is broken")
	}
}

// testFunctions returns the names of every Test, Fuzz and Example function
// declared in a _test.go file of the workspace (or in a contract-suite
// file whose cases run as subtests is not enough: only top-level
// functions count).
func testFunctions(t *testing.T) map[string]bool {
	t.Helper()
	decl := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Example)[A-Za-z0-9_]*)\(`)
	names := map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != "." {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// generatedGo is the standard marker of a generated Go file.
var generatedGo = regexp.MustCompile(`(?m)^// Code generated .* DO NOT EDIT\.$`)

// goComments returns the text of every comment of a Go file (doc comments,
// comments inside functions and comments at the end of a line), with the
// comment markers removed and a blank line between comment groups, so that
// a sentence never runs from one comment into the next.
func goComments(t *testing.T, path string, src []byte) string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, src, parser.ParseComments)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	for _, g := range f.Comments {
		out = append(out, g.Text())
	}
	return strings.Join(out, "\n\n")
}

// stripCodeBlocks blanks fenced code blocks of Markdown.
func stripCodeBlocks(md string) string {
	var out []string
	in := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			out = append(out, "")
			continue
		}
		if in {
			out = append(out, "")
		} else {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

var sentenceEnd = regexp.MustCompile(`[.!?]\s+[A-Z(*\x60"]`)

// sentences splits text into sentences: at blank lines, at table rows and
// list items, and after a full stop followed by a capital letter. A
// "(tested: ...)" right after a sentence's full stop belongs to it.
func sentences(text string) []string {
	var blocks []string
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			blocks = append(blocks, strings.Join(cur, " "))
			cur = nil
		}
	}
	for _, line := range strings.Split(text, "\n") {
		l := strings.TrimSpace(line)
		switch {
		case l == "":
			flush()
		case strings.HasPrefix(l, "|"), strings.HasPrefix(l, "#"):
			flush()
			blocks = append(blocks, l)
		case strings.HasPrefix(l, "- "), strings.HasPrefix(l, "* "), regexp.MustCompile(`^[0-9]+\. `).MatchString(l):
			flush()
			cur = append(cur, l)
		default:
			cur = append(cur, l)
		}
	}
	flush()
	var out []string
	for _, b := range blocks {
		for {
			loc := sentenceEnd.FindStringIndex(b)
			if loc == nil {
				break
			}
			cut := loc[0] + 1
			rest := strings.TrimSpace(b[cut:])
			if strings.HasPrefix(rest, "(tested:") {
				// The reference after the full stop goes with the sentence.
				if end := strings.Index(rest, ")"); end >= 0 {
					cut = len(b) - len(rest) + end + 1
					out = append(out, b[:cut])
					b = strings.TrimSpace(b[cut:])
					continue
				}
			}
			out = append(out, b[:cut])
			b = strings.TrimSpace(b[cut:])
		}
		if b != "" {
			out = append(out, b)
		}
	}
	return out
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 240 {
		s = s[:240] + "..."
	}
	return s
}
