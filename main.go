// Command drconsole is a terminal incident console for PostgreSQL disaster recovery.
// This file only builds the command line (on cobra) and wires the parts; the work lives in
// recovery/, storage/, checklists/, incident/ and ui/. Each subcommand is a cmd_<verb>.go
// file with an options struct and a constructor.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

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
	backupDir   string // --backup-dir
	debug       bool   // --debug: library logs (AWS SDK, …) to stderr

	// self is drconsole's own executable, for work that runs in a process of its own
	// (wal-fetch's prefetch); "" when this is not the drconsole binary (tests).
	self string
}

func main() {
	self, _ := os.Executable()
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, self: self}
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

	root := a.command()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(a.stderr, "drconsole %s: %s\n", displayName(cmd), storage.Printable(oneLine(err)))
	if isWALFetch(cmd) {
		return walFetchExit(err)
	}
	if ctx.Err() != nil {
		// Interrupted: whatever the error says (a connection cut by the cancel, say), the
		// run was cancelled, and it cleaned up before returning.
		return exitCancelled
	}
	if isUsageError(err) {
		return exitUsage
	}
	return exitCode(err)
}

// command builds the command line: the console is the root (drconsole with no
// subcommand, or drconsole console), every other action a subcommand.
func (a *app) command() *cobra.Command {
	root := newConsoleCmd(a)
	root.Use = "drconsole"
	root.Aliases = nil
	root.Args = nil // cobra then names an unknown subcommand and suggests the nearest
	root.Short = "terminal incident console for PostgreSQL disaster recovery"
	root.Long = `drconsole turns the disaster recovery runbook into software: pick the scenario, follow
its timed steps, pick a backup from any location, stream it into a scratch database with
live progress, check it, swap it in (the old database is kept), tick the post-recovery
checklist and leave a report. Without a subcommand it opens the console; every action is
also a subcommand with --json output and meaningful exit codes (see the README).`
	root.Version = version
	root.SilenceUsage, root.SilenceErrors = true, true
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%v (see %s -h)", err, c.CommandPath())}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", "", "config `file` (default: $DRCONSOLE_CONFIG, ./drconsole.yaml, $XDG_CONFIG_HOME/drconsole/config.yaml, /etc/drconsole/config.yaml)")
	pf.StringVar(&a.stateDir, "state-dir", "", "`dir`ectory for incident journals (default: $XDG_STATE_HOME/drconsole)")
	pf.StringVar(&a.runbookPath, "runbook", "", "runbook `file` to use instead of the configured or embedded one")
	pf.StringVar(&a.backupDir, "backup-dir", "", "local backup `dir`ectory (default: $BACKUP_DIR, else "+storage.DefaultDir+", unless the config file names locations)")
	pf.BoolVar(&a.debug, "debug", false, "print library logs (AWS SDK and others) to stderr")

	console := newConsoleCmd(a)
	root.AddCommand(console, newBackupsCmd(a), newRestoreCmd(a), newVerifyCmd(a), newCheckCmd(a), newBackupCmd(a),
		newRunbookCmd(a), newIncidentsCmd(a), newReportCmd(a), newConfigCmd(a), newNotifyCmd(a), newManCmd(a),
		newWALPushCmd(a), newWALFetchCmd(a), newWALStatusCmd(a), newBaseBackupCmd(a), newDrillCmd(a))
	return root
}

// displayName is how errors name the command: "restore", "runbook validate", "console".
func displayName(c *cobra.Command) string {
	if c == nil || !c.HasParent() {
		return "console"
	}
	return strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ")
}

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// noArgs and maxArgs are cobra argument checks whose errors are usage errors (exit 2).
func noArgs(hint string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("%s takes no arguments (got %q)%s", displayName(c), args[0], hint)
		}
		return nil
	}
}

func maxArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) > n {
			return usagef("%s takes at most %d %s, got %d", displayName(c), n, what, len(args))
		}
		return nil
	}
}

// isUsageError reports a mistake on the command line, including cobra's own words for
// an unknown subcommand.
func isUsageError(err error) bool {
	var ue usageError
	return errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag")
}

// oneLine keeps an error to the one line the contract promises.
func oneLine(err error) string {
	s := strings.TrimSpace(err.Error())
	s = strings.ReplaceAll(s, "\r", "")
	s = strings.ReplaceAll(s, "\n\n", "\n")
	s = strings.ReplaceAll(s, "\n\t", " ") // cobra's "Did you mean this?" list
	return strings.ReplaceAll(s, "\n", "; ")
}
