package esmill_test

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// maxLines is the longest a Go file of the library may be, tests and
// generated code excepted: a longer one mixes concerns and is split by
// concern instead.
const maxLines = 500

// TestNoLongFiles walks every module of the workspace and fails for each
// non-test Go file over maxLines lines, so that a file does not grow back
// past the limit unnoticed.
func TestNoLongFiles(t *testing.T) {
	checked := 0
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
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		lines, generated, err := countLines(path)
		if err != nil {
			return err
		}
		checked++
		if lines > maxLines && !generated {
			t.Errorf("%s has %d lines, over %d: split it by concern", path, lines, maxLines)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("only %d Go files found: the walk is broken", checked)
	}
}

// countLines counts a file's lines and says whether it carries the
// standard "Code generated ... DO NOT EDIT." line.
func countLines(path string) (int, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	n, generated := 0, false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		n++
		if l := sc.Text(); strings.HasPrefix(l, "// Code generated ") && strings.HasSuffix(l, " DO NOT EDIT.") {
			generated = true
		}
	}
	return n, generated, sc.Err()
}
