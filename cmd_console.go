package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	tea "charm.land/bubbletea/v2"

	"drconsole/checklists"
	"drconsole/recovery"
	"drconsole/storage"
	"drconsole/ui"
)

func init() {
	register(&command{
		name:    "",
		usage:   "[--db-url URL] [--gpg-key FILE] [--passphrase-file FILE] [--signer-key FILE] [--allow-unsigned] [--backup-dir DIR] [--no-owner] [--drill]",
		summary: "open the incident console (the default with no subcommand)",
		run:     runConsole,
	})
}

// consoleWait bounds how long a hang-up waits for a cancelled restore to drop its
// scratch database before drconsole exits anyway.
const consoleWait = 2 * time.Minute

func runConsole(ctx context.Context, a *app, args []string) error {
	c := commands[""]
	fs := a.flags(c)
	var conn connFlags
	var key keyFlags
	conn.add(fs)
	key.add(fs)
	backupDir := fs.String("backup-dir", "", "local backup `dir`ectory (default: $BACKUP_DIR, else "+storage.DefaultDir+")")
	drill := fs.Bool("drill", false, "drill or tabletop mode: commands are recorded, not run, and nothing is swapped")
	noOwner := fs.Bool("no-owner", false, "do not restore object ownership (when the archive's roles do not exist on the target)")
	allowUnsigned := fs.Bool("allow-unsigned", false, "restore backups that none of the --signer-key keys signed (they are still flagged)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unknown subcommand %q (see drconsole help)", pos[0])
	}

	rb, _, err := loadRunbook(a)
	if err != nil {
		return err
	}
	cw := *a
	if *backupDir != "" {
		cw.getenv = func(k string) string {
			if k == "BACKUP_DIR" {
				return *backupDir
			}
			return a.getenv(k)
		}
	}
	locs, err := cw.locations(ctx)
	if err != nil {
		return err
	}
	if *backupDir != "" && !hasDir(locs, *backupDir) {
		locs = append(locs, storage.NewDir("backup-dir", *backupDir))
	}
	keys, err := key.keys(a)
	if err != nil {
		return err
	}
	keys.Ask = nil // the console asks in a form, never on the raw terminal
	dbConn, connErr := conn.resolve(a)
	if dbConn != nil {
		a.warnPasswordInArgs(dbConn)
	}

	host, _ := os.Hostname()
	work := &sync.WaitGroup{}
	opt := ui.Options{
		Context:       ctx,
		StateDir:      checklists.StateDir(a.stateDir, a.getenv),
		Runbook:       rb,
		Locations:     locs,
		Conn:          dbConn,
		ConnErr:       connErr,
		Keys:          *keys,
		NoOwner:       *noOwner,
		AllowUnsigned: *allowUnsigned,
		Drill:         *drill,
		Operator:      checklists.Operator(a.getenv),
		Host:          host,
		Work:          work,
	}
	if a.getenv("NO_COLOR") != "" {
		opt.Theme = ui.PlainTheme()
	} else {
		opt.Theme = ui.DefaultTheme()
	}

	p := tea.NewProgram(ui.New(opt), tea.WithoutSignalHandler())

	// A dropped SSH session: record it, cancel the restore cleanly (main's context is
	// cancelled by the same signal, which stops the engine), and exit once it has cleaned
	// up. Bubble Tea does not catch SIGHUP, and Go would exit on it without this.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP, syscall.SIGTERM)
	defer signal.Stop(hup)
	stop := make(chan struct{}) // ends the two watchers when the console returns
	defer close(stop)
	go func() {
		for {
			select {
			case <-hup:
				p.Send(ui.HangupMsg{})
			case <-stop:
				return
			}
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			p.Send(ui.HangupMsg{})
		case <-stop:
		}
	}()

	final, runErr := p.Run()
	done := make(chan struct{})
	go func() { work.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(consoleWait):
		return fmt.Errorf("gave up waiting for the restore to clean up after %s; check for a scratch database (*_restore_*)", consoleWait)
	}
	m, ok := final.(ui.Model)
	if ok {
		_ = m.Close() // every write is done: Work is over and the program has ended
	}
	if ok && m.HungUp() {
		return fmt.Errorf("%w: the terminal hung up; the incident stays open (run drconsole to resume it)", recovery.ErrCancelled)
	}
	if runErr != nil && !errors.Is(runErr, tea.ErrProgramKilled) {
		return runErr
	}
	if ok && m.JournalErr() != nil {
		return m.JournalErr() // what happened is on the screen; the record of it is incomplete
	}
	return nil
}

func hasDir(locs []storage.Location, dir string) bool {
	for _, l := range locs {
		if d, ok := l.(*storage.Dir); ok && d.String() == dir {
			return true
		}
	}
	return false
}
