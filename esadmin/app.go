package esadmin

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9/logging"
)

// App is the admin command tree. The zero value is the generic tool (the
// esmill command): it works on the projections and reactors it finds in
// the store named by the flags, without their handlers. A program that
// registers its projections ([Projection], [Reactor]) in Targets can also
// replay parked events and reset or rebuild projections.
//
// An App is used by one goroutine at a time.
type App struct {
	// Name is the program's name in help texts and error lines. Default:
	// "esmill".
	Name string
	// Targets are the projections and reactors this program registers.
	// Targets not registered are found in the store given by the flags
	// (--postgres or --sqlite), without handlers.
	Targets []Target
	// Stdout and Stderr receive the output and the help texts. Defaults:
	// os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
	// Getenv reads the environment variables that stand in for flags
	// (ESMILL_SIERRADB, ...). Default: os.Getenv.
	Getenv func(string) string
	// Terminal says whether Stdout is a terminal, which draws a progress
	// bar and clears the screen between --watch rounds. Default: whether
	// Stdout is an *os.File on a character device.
	Terminal *bool
}

// ErrUsage is matched by the errors of a command line that does not parse
// (an unknown command or flag, a missing argument); [App.Main] returns
// status 2 for them.
var ErrUsage = errors.New("usage")

// UsageError is a command line that does not parse. It matches
// [ErrUsage].
type UsageError struct {
	// Command is the command whose line was wrong, such as "esmill
	// parked show".
	Command string
	Err     error
}

func (e *UsageError) Error() string {
	return fmt.Sprintf("%s: %v (see %s -h)", e.Command, e.Err, e.Command)
}

// Is reports whether target is [ErrUsage].
func (e *UsageError) Is(target error) bool { return target == ErrUsage }

// Unwrap returns the parse error.
func (e *UsageError) Unwrap() error { return e.Err }

func (a *App) setDefaults() {
	if a.Name == "" {
		a.Name = "esmill"
	}
	if a.Stdout == nil {
		a.Stdout = os.Stdout
	}
	if a.Stderr == nil {
		a.Stderr = os.Stderr
	}
	if a.Getenv == nil {
		a.Getenv = os.Getenv
	}
	if a.Terminal == nil {
		t := false
		if f, ok := a.Stdout.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				t = true
			}
		}
		a.Terminal = &t
	}
}

// Main runs the command line of the process (os.Args) until it ends or
// the process gets SIGINT or SIGTERM, and returns the exit status: 0 on
// success, 1 on failure, with a one-line reason on Stderr, 2 on a usage
// error. A program calls os.Exit with it once it has closed what it
// opened:
//
//	os.Exit((&esadmin.App{Targets: targets}).Main())
//
// Main silences go-redis's process-wide logger: its connection retries
// would interleave with the output; the error that ends a command says
// what failed.
func (a *App) Main() int {
	logging.Disable()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return a.exitCode(a.Run(ctx, os.Args[1:]))
}

func (a *App) exitCode(err error) int {
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		fmt.Fprintln(a.Stderr, oneLine(a.Name+": "+err.Error()))
		return 2
	default:
		fmt.Fprintln(a.Stderr, oneLine(a.Name+": "+err.Error()))
		return 1
	}
}

// oneLine joins the lines of a message (errors.Join writes one per
// error).
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ; ")), " ")
}

// Run runs one command line (without the program name). It returns
// flag.ErrHelp after printing a help text asked for with -h, an error
// matching [ErrUsage] for a line that does not parse, and the command's
// error otherwise.
func (a *App) Run(ctx context.Context, args []string) error {
	a.setDefaults()
	root := a.tree()
	return a.dispatch(ctx, root, []string{a.Name}, args)
}

// command is a node of the command tree: a group of subcommands or a
// command that runs.
type command struct {
	name  string
	args  string // the positional arguments, for the usage line
	short string
	long  string
	// flags adds the command's own flags; connection flags are added by
	// conn, output flags by out.
	flags func(fs *flag.FlagSet, o *opts)
	conn  services // the services whose flags it takes
	sub   []*command
	run   func(ctx context.Context, x *exec, args []string) error
	// nargs is the number of positional arguments (-1: any).
	nargs int
}

func (a *App) dispatch(ctx context.Context, c *command, path, args []string) error {
	if len(c.sub) > 0 {
		if len(args) == 0 {
			a.groupUsage(a.Stderr, c, path)
			return &UsageError{Command: strings.Join(path, " "), Err: errors.New("missing command")}
		}
		switch args[0] {
		case "-h", "-help", "--help", "help":
			a.groupUsage(a.Stdout, c, path)
			return flag.ErrHelp
		}
		for _, s := range c.sub {
			if s.name == args[0] {
				return a.dispatch(ctx, s, append(path, s.name), args[1:])
			}
		}
		return &UsageError{Command: strings.Join(path, " "), Err: fmt.Errorf("unknown command %q", args[0])}
	}
	name := strings.Join(path, " ")
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o := &opts{}
	o.connFlags(fs, c.conn)
	if c.flags != nil {
		c.flags(fs, o)
	}
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		a.commandUsage(a.Stdout, c, name, fs)
		return flag.ErrHelp
	}
	if err != nil {
		return &UsageError{Command: name, Err: err}
	}
	if c.nargs >= 0 && len(pos) != c.nargs {
		return &UsageError{Command: name, Err: fmt.Errorf("want %d argument(s) (%s), got %d", c.nargs, c.args, len(pos))}
	}
	x := &exec{app: a, o: o, out: a.Stdout, name: name}
	defer x.close()
	return c.run(ctx, x, pos)
}

// parseInterleaved parses flags before, between and after the positional
// arguments, which it returns.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (a *App) groupUsage(w io.Writer, c *command, path []string) {
	name := strings.Join(path, " ")
	fmt.Fprintf(w, "%s", strings.TrimSpace(c.long))
	fmt.Fprintf(w, "\n\nUsage:\n  %s <command> [flags] [arguments]\n\nCommands:\n", name)
	width := 0
	for _, s := range c.sub {
		width = max(width, len(s.name))
	}
	for _, s := range c.sub {
		fmt.Fprintf(w, "  %-*s  %s\n", width, s.name, s.short)
	}
	fmt.Fprintf(w, "\nRun \"%s <command> -h\" for a command's flags.\n", name)
}

func (a *App) commandUsage(w io.Writer, c *command, name string, fs *flag.FlagSet) {
	fmt.Fprintf(w, "%s\n\nUsage:\n  %s [flags]", strings.TrimSpace(c.long), name)
	if c.args != "" {
		fmt.Fprintf(w, " %s", c.args)
	}
	fmt.Fprintf(w, "\n\nFlags:\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}
