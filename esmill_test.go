package esmill_test

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/aggregate"
	"github.com/esmill/esmill/cqrs"
	"github.com/esmill/esmill/readmodel"
	"github.com/esmill/esmill/readmodel/file"
	"github.com/esmill/esmill/redispart"
	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/pubsub"
)

type declares struct{ c esmill.Class }

func (d declares) Error() string            { return "declares " + d.c.String() }
func (d declares) ErrorClass() esmill.Class { return d.c }

func TestClassify(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		name     string
		err      error
		want     esmill.Class
		declared bool
	}{
		{"unknown", base, esmill.Transient, false},
		{"deadline", fmt.Errorf("read: %w", context.DeadlineExceeded), esmill.Transient, false},
		{"marked transient", esmill.MarkTransient(base), esmill.Transient, true},
		{"marked final", esmill.MarkFinal(base), esmill.Final, true},
		{"marked poison", esmill.MarkPoison(base), esmill.Poison, true},
		{"wrapped", fmt.Errorf("handler: %w", esmill.MarkPoison(base)), esmill.Poison, true},
		{"joined", errors.Join(base, declares{esmill.Final}), esmill.Final, true},
		{"outermost wins", esmill.MarkFinal(fmt.Errorf("x: %w", declares{esmill.Poison})), esmill.Final, true},
		{"declared by a type", declares{esmill.Poison}, esmill.Poison, true},
	}
	for _, tt := range tests {
		if got := esmill.Classify(tt.err); got != tt.want {
			t.Errorf("%s: Classify = %s, want %s", tt.name, got, tt.want)
		}
		if c, ok := esmill.Declared(tt.err); c != tt.want || ok != tt.declared {
			t.Errorf("%s: Declared = %s, %v; want %s, %v", tt.name, c, ok, tt.want, tt.declared)
		}
	}
	if esmill.MarkPoison(nil) != nil || esmill.MarkFinal(nil) != nil || esmill.MarkTransient(nil) != nil {
		t.Error("marking nil must give nil")
	}
	m := esmill.MarkFinal(base)
	if m.Error() != base.Error() || !errors.Is(m, base) {
		t.Errorf("a mark changes the error: %q", m)
	}
}

func TestClosedError(t *testing.T) {
	var errExecutorClosed error = &esmill.ClosedError{Text: "x: executor closed"}
	err := fmt.Errorf("run: %w", errExecutorClosed)
	if !errors.Is(err, esmill.ErrClosed) || !errors.Is(err, errExecutorClosed) || err.Error() != "run: x: executor closed" {
		t.Fatalf("%v", err)
	}
	if errors.Is(errors.New("x: executor closed"), esmill.ErrClosed) {
		t.Fatal("a plain error matches ErrClosed")
	}
}

// Every package's ErrClosed matches esmill.ErrClosed and names what was
// closed.
func TestEveryErrClosed(t *testing.T) {
	texts := map[string]bool{}
	for _, err := range []error{aggregate.ErrClosed, cqrs.ErrClosed, sierradb.ErrClosed, pubsub.ErrClosed,
		embedded.ErrClosed, readmodel.ErrClosed, file.ErrClosed, cqrs.ErrRouterClosed, redispart.ErrClosed} {
		if !errors.Is(err, esmill.ErrClosed) {
			t.Errorf("%q does not match esmill.ErrClosed", err)
		}
		if texts[err.Error()] {
			t.Errorf("%q twice", err)
		}
		texts[err.Error()] = true
	}
}

// The correlation key is Watermill's, so that its CorrelationID middleware
// carries it along.
func TestCorrelationKeyIsWatermills(t *testing.T) {
	if esmill.MetaCorrelationID != middleware.CorrelationIDMetadataKey {
		t.Fatalf("%q, Watermill uses %q", esmill.MetaCorrelationID, middleware.CorrelationIDMetadataKey)
	}
}

// metaConstants returns the Meta constants of metadata.go: name -> value.
func metaConstants(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "metadata.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					t.Fatalf("%s is not a string literal", n.Name)
				}
				v, _ := strconv.Unquote(lit.Value)
				out[n.Name] = v
			}
		}
	}
	return out
}

// Each key has one name and one meaning.
func TestMetadataKeysAreDistinct(t *testing.T) {
	keys := metaConstants(t)
	if len(keys) < 30 {
		t.Fatalf("only %d keys found in metadata.go", len(keys))
	}
	seen := map[string]string{}
	for name, v := range keys {
		if !strings.HasPrefix(name, "Meta") {
			t.Errorf("%s: metadata keys are named Meta...", name)
		}
		if other, ok := seen[v]; ok {
			t.Errorf("%s and %s are both %q", name, other, v)
		}
		seen[v] = name
		foreign := v == esmill.MetaCorrelationID || v == esmill.MetaTraceParent || v == esmill.MetaTraceState
		if !foreign && !strings.HasPrefix(v, "esmill_") {
			t.Errorf("%s = %q lacks the esmill_ prefix", name, v)
		}
	}
}

// No other file of the module spells an esmill metadata key: they use the
// constants. Tests may spell them, to pin the wire format.
func TestNoSecondDefinitionOfAKey(t *testing.T) {
	values := map[string]string{}
	for name, v := range metaConstants(t) {
		values[v] = name
	}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || path == "metadata.go" {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			v, _ := strconv.Unquote(lit.Value)
			if name, ok := values[v]; ok {
				t.Errorf("%s spells %q: use esmill.%s", path, v, name)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
