package esadmin_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/esmill/esmill/esadmin"
)

var update = flag.Bool("update", false, "rewrite the golden help texts in testdata/help")

// The help text of every command of the esmill command (esadmin.App's
// zero value) is the one checked in under testdata/help; run with
// -update after changing one, and review the diff.
func TestHelpGolden(t *testing.T) {
	commands := [][]string{{}}
	// Walk the tree through the group help texts.
	for i := 0; i < len(commands); i++ {
		path := commands[i]
		out := help(t, path)
		name := "esmill"
		if len(path) > 0 {
			name = strings.Join(path, "_")
		}
		golden := filepath.Join("testdata", "help", name+".golden")
		if *update {
			if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
		} else {
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestHelpGolden -update ./esadmin to write it)", err)
			}
			if string(want) != out {
				t.Errorf("help of %q differs from %s (run with -update and review the diff):\n%s", strings.Join(path, " "), golden, out)
			}
		}
		if _, sub, ok := strings.Cut(out, "\nCommands:\n"); ok {
			sub, _, _ = strings.Cut(sub, "\n\n")
			for _, line := range strings.Split(sub, "\n") {
				if f := strings.Fields(line); len(f) > 0 {
					commands = append(commands, append(append([]string(nil), path...), f[0]))
				}
			}
		}
	}
	if len(commands) < 12 {
		t.Fatalf("walked %d commands: %v", len(commands), commands)
	}
}

func help(t *testing.T, path []string) string {
	t.Helper()
	var out, errb bytes.Buffer
	app := &esadmin.App{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	err := app.Run(t.Context(), append(append([]string(nil), path...), "-h"))
	if !errors.Is(err, flag.ErrHelp) || errb.Len() > 0 {
		t.Fatalf("%v -h: %v, stderr %q", path, err, errb.String())
	}
	return out.String()
}

// A wrong command line is a usage error naming the command.
func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{}, "missing command"},
		{[]string{"nope"}, `unknown command "nope"`},
		{[]string{"parked", "show"}, "want 1 argument(s) (POSITION), got 0"},
		{[]string{"status", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"parked", "show", "--projection", "p", "x:1"}, `"x:1" is not a position`},
	} {
		var out, errb bytes.Buffer
		app := &esadmin.App{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
		err := app.Run(t.Context(), c.args)
		if !errors.Is(err, esadmin.ErrUsage) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want a usage error with %q", c.args, err, c.want)
		}
	}
}

// A command that needs a service no flag or variable names says which.
func TestNotConfigured(t *testing.T) {
	app := &esadmin.App{Stdout: new(bytes.Buffer), Stderr: new(bytes.Buffer), Getenv: func(string) string { return "" }}
	err := app.Run(t.Context(), []string{"stream", "show", "acct-1"})
	if !errors.Is(err, esadmin.ErrNotConfigured) || !strings.Contains(err.Error(), "--sierradb") || !strings.Contains(err.Error(), esadmin.EnvSierraDB) {
		t.Fatalf("stream show without SierraDB: %v", err)
	}
}
