package esmill_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/esmill/esmill/internal/testservice"
)

func TestMain(m *testing.M) { os.Exit(testservice.Main(m)) }

var (
	readmeGoBlock = regexp.MustCompile("(?s)```go\n(.*?)```")
	testedSnippet = regexp.MustCompile(`(?s)// README begin\n(.*?)[ \t]*// README end\n`)
)

// dedent removes the indentation every non-empty line shares.
func dedent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	prefix, first := "", true
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		ind := l[:len(l)-len(strings.TrimLeft(l, "\t "))]
		if first {
			prefix, first = ind, false
		}
		for !strings.HasPrefix(ind, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, prefix)
	}
	return strings.TrimRight(strings.Join(lines, "\n"), "\n") + "\n"
}

// snippetFiles hold the README's Go blocks, in README order: the root
// module's, then the container module's (which may import testcontainers-go).
var snippetFiles = []string{"readme_example_test.go", "sierradb/sierradbcontainer/readme_example_test.go"}

// Every Go block of the README is code that the snippet files compile and
// run, word for word: change one, and this test says which.
func TestReadmeSnippets(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var code []byte
	for _, f := range snippetFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		code = append(code, b...)
	}
	blocks := readmeGoBlock.FindAllStringSubmatch(string(readme), -1)
	snippets := testedSnippet.FindAllStringSubmatch(string(code), -1)
	if len(blocks) == 0 || len(blocks) != len(snippets) {
		t.Fatalf("README.md has %d Go blocks, %v %d tested snippets", len(blocks), snippetFiles, len(snippets))
	}
	for i := range blocks {
		want, got := dedent(snippets[i][1]), dedent(blocks[i][1])
		if got != want {
			t.Errorf("README Go block %d differs from the tested code.\nREADME:\n%s\ntested:\n%s", i+1, got, want)
		}
	}
}
