// Command drconsole is a terminal incident console for PostgreSQL disaster recovery.
// This file only parses the command line and wires the parts; the work lives in
// recovery/, storage/, checklists/ and ui/. Each subcommand is a cmd_<verb>.go file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"drconsole/storage"
)

// app is what every subcommand gets: the process's streams and environment, and the
// global settings shared by all subcommands.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string

	configPath  string // --config
	stateDir    string // --state-dir
	runbookPath string // --runbook
	debug       bool   // --debug: library logs (AWS SDK, …) to stderr
}

// command is one subcommand. run gets the arguments after the subcommand's name.
type command struct {
	name    string
	usage   string // e.g. "restore [--yes] BACKUP"
	summary string
	run     func(ctx context.Context, a *app, args []string) error
}

var commands = map[string]*command{}

// register adds a subcommand; each cmd_<verb>.go calls it from init.
func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("drconsole: subcommand registered twice: " + c.name)
	}
	commands[c.name] = c
}

func main() {
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	os.Exit(a.main(os.Args[1:]))
}

// main runs one command line and returns the process exit code.
func (a *app) main(args []string) int {
	if _, ok := a.stderr.(*lockedWriter); !ok {
		a.stderr = &lockedWriter{w: a.stderr}
	}
	// The first cancel (Ctrl-C, a terminal hang-up, a kill) asks the running work to stop in
	// order: children such as pg_restore run in their own process group and are stopped by
	// us, and scratch databases are dropped. A second signal is left to the default action.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()

	name, rest := subcommand(args)
	for _, arg := range args {
		if arg == "--" {
			break
		}
		if arg == "-h" || arg == "--help" || arg == "-help" {
			if name == "" {
				a.usage(a.stdout)
				return exitOK
			}
		}
		if arg == "--version" {
			fmt.Fprintln(a.stdout, "drconsole", version)
			return exitOK
		}
	}
	if name == "help" {
		a.usage(a.stdout)
		return exitOK
	}
	c, ok := commands[name]
	if !ok {
		if name == "" {
			a.usage(a.stderr)
		} else {
			fmt.Fprintf(a.stderr, "drconsole: unknown subcommand %q (see drconsole help)\n", name)
		}
		return exitUsage
	}
	err := c.run(ctx, a, rest)
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(a.stderr, "drconsole %s: %s\n", displayName(c), storage.Printable(oneLine(err)))
	if ctx.Err() != nil {
		// Interrupted: whatever the error says (a connection cut by the cancel, say), the
		// run was cancelled, and it cleaned up before returning.
		return exitCancelled
	}
	return exitCode(err)
}

// valueFlags are the flags (global or the console's) whose value is the next argument
// when written without "=": their values are never taken for a subcommand's name.
var valueFlags = map[string]bool{
	"config": true, "state-dir": true, "runbook": true, "db-url": true, "gpg-key": true,
	"passphrase-file": true, "backup-dir": true, "signer-key": true,
}

// subcommand finds the subcommand in args: the first argument that is not a flag or a
// flag's value. Without one, the whole command line belongs to the console
// ("drconsole --gpg-key FILE").
func subcommand(args []string) (string, []string) {
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			break
		}
		if strings.HasPrefix(arg, "-") {
			name := strings.TrimLeft(arg, "-")
			if !strings.Contains(name, "=") && valueFlags[name] {
				i++
			}
			continue
		}
		// A registered name, or a mistyped one: "drconsole bakups" must not open the console.
		return arg, append(append([]string{}, args[:i]...), args[i+1:]...)
	}
	return "", args
}

func displayName(c *command) string {
	if c.name == "" {
		return "console"
	}
	return c.name
}

func (a *app) usage(w io.Writer) {
	fmt.Fprintln(w, "drconsole: terminal incident console for PostgreSQL disaster recovery")
	fmt.Fprintln(w, "\nUsage:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := commands[n]
		fmt.Fprintf(w, "  drconsole %s\n      %s\n", c.usage, c.summary)
	}
	fmt.Fprintln(w, "\nGlobal flags (any subcommand): --config FILE, --state-dir DIR, --runbook FILE, --debug")
	fmt.Fprintln(w, "Run 'drconsole SUBCOMMAND -h' for a subcommand's flags. Exit codes are listed in the README.")
}

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// flags returns a flag set for a subcommand with the global flags already on it.
func (a *app) flags(c *command) *flag.FlagSet {
	fs := flag.NewFlagSet("drconsole "+c.name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.StringVar(&a.configPath, "config", a.configPath, "config `file` (default: $DRCONSOLE_CONFIG, ./drconsole.yaml, $XDG_CONFIG_HOME/drconsole/config.yaml, /etc/drconsole/config.yaml)")
	fs.StringVar(&a.stateDir, "state-dir", a.stateDir, "`dir`ectory for incident journals (default: $XDG_STATE_HOME/drconsole)")
	fs.StringVar(&a.runbookPath, "runbook", a.runbookPath, "runbook `file` to use instead of the embedded default")
	fs.BoolVar(&a.debug, "debug", a.debug, "print library logs (AWS SDK and others) to stderr")
	fs.Usage = func() {
		fmt.Fprintf(a.stderr, "Usage: drconsole %s\n\n%s\n\nFlags:\n", c.usage, c.summary)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags that may come before, between or after the positional arguments,
// as operators type them ("restore latest --yes"), and returns the positional ones.
// "--" ends the flags.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{err}
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

// oneLine keeps an error to the one line the contract promises.
func oneLine(err error) string {
	s := strings.TrimSpace(err.Error())
	s = strings.ReplaceAll(s, "\r", "")
	return strings.ReplaceAll(s, "\n", "; ")
}
