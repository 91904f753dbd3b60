package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/spf13/cobra"

	"drconsole/checklists"
	"drconsole/drill/inject"
	"drconsole/recovery"
	"drconsole/storage"
	"drconsole/ui"
	"drconsole/wal"
)

// consoleWait bounds how long a hang-up waits for a cancelled restore to drop its
// scratch database before drconsole exits anyway.
const consoleWait = 2 * time.Minute

type consoleOptions struct {
	conn  connFlags
	key   keyFlags
	drill bool
	load  loadFlags
	// sandbox: the server is a drill's sandbox (drconsole drill): restores swap and the
	// runbook's psql commands run there for real. score scores the drill at its close.
	sandbox  bool
	score    func() (ui.Scored, error)
	alert    time.Time // a sandbox's: when the first sign of its fault was seen
	scenario string    // a drill's
	// A drill's injects, and what applies them for real (a sandbox's; nil in a tabletop).
	injects        []inject.Inject
	injectScenario string
	applyInject    func(context.Context, string) (string, error)
	workDir        string
}

// newConsoleCmd is the console: the root command (drconsole with no subcommand) and the
// same as drconsole console.
func newConsoleCmd(a *app) *cobra.Command {
	o := &consoleOptions{}
	c := &cobra.Command{
		Use:     "console [flags]",
		Aliases: []string{"tui"},
		Short:   "open the incident console (the default with no subcommand)",
		Long: `Opens the incident console: resume an open incident or start one (or a drill), follow the
scenario's timed steps, choose a backup, check it in pre-flight, watch the restore, check
the restored copy, swap it in, tick the post-recovery checklist and close with a report.
It works at 80×24, needs no mouse, honours NO_COLOR; ? shows every key.`,
		Example: `  DB_HOST=db1 DB_USER=postgres DB_NAME=spywatcher drconsole --gpg-key ops-secret.asc
  drconsole --drill`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return runConsole(c.Context(), a, o) },
	}
	f := c.Flags()
	o.conn.add(f)
	o.key.add(f)
	f.BoolVar(&o.drill, "drill", false, "drill or tabletop mode: commands are recorded, not run, and nothing is swapped")
	o.load.add(f)
	f.StringVar(&o.workDir, "work-dir", "", "the `dir`ectory for a point-in-time recovery's temporary cluster and its dump, which need the cluster's size (default: $TMPDIR or /tmp)")
	return c
}

func runConsole(ctx context.Context, a *app, o *consoleOptions) error {
	rb, _, err := loadRunbook(a)
	if err != nil {
		return err
	}
	locs, err := a.locations(ctx)
	if err != nil {
		return err
	}
	keys, err := o.key.keys(a)
	if err != nil {
		return err
	}
	keys.Ask = nil // the console asks in a form, never on the raw terminal
	dbConn, connErr := o.conn.resolve(a)
	if dbConn != nil {
		a.warnPasswordInArgs(dbConn)
	}

	host, _ := os.Hostname()
	work := &sync.WaitGroup{}
	var database string
	if dbConn != nil {
		database = dbConn.Database
	}
	// A mistake in the notify: list is shown in the console, never a reason not to open it.
	notifyChans, notifyErr := a.notifyChannels()
	opt := ui.Options{
		Notify:    notifyChans,
		NotifyErr: notifyErr,
		Prefixes:  a.backupPrefixes(database),
		Settings:  a.settings(ctx, &o.conn, &o.key),
		Context:   ctx,
		StateDir:  checklists.StateDir(a.stateDir, a.getenv),
		Runbook:   rb,
		Vars:      templateVars(dbConn, locs),
		Locations: locs,
		Conn:      dbConn,
		ConnErr:   connErr,
		Keys:      *keys,
		Load:      o.load.options(recovery.Options{}),
		Drill:     o.drill,
		Sandbox:   o.sandbox,
		Scenario:  o.scenario,
		Score:     o.score,
		Alert:     o.alert,
		Operator:  checklists.Operator(a.getenv),
		Host:      host,
		Work:      work,

		Injects:        o.injects,
		InjectScenario: o.injectScenario,
		ApplyInject:    o.applyInject,
		WorkDir:        o.workDir,
	}
	// A point in time is planned as restore --to-time plans it, and recovered through the
	// same incident.Run.RecoverDatabase.
	opt.PITR = func(ctx context.Context, target time.Time) (*wal.PITRPlan, error) {
		opts, err := a.pitrOptions(ctx, &o.key, keys)
		if err != nil {
			return nil, err
		}
		opts.Target = target
		return wal.PlanPITR(ctx, opts)
	}
	if !o.alert.IsZero() {
		opt.Settings = append(opt.Settings, ui.Setting{Name: "alert", Value: "the first sign of trouble was seen at " + o.alert.UTC().Format("2006-01-02 15:04:05") + " UTC"})
	}
	return runConsoleProgram(ctx, a, opt)
}

// hungUp is how the console ended when its terminal went away: the work in progress was
// cancelled and cleaned up. then says what becomes of the incident, which depends on who
// opened the console: a drill's sandbox, say, goes with it and leaves nothing to resume.
type hungUp struct{ then string }

func (h hungUp) Error() string {
	return recovery.ErrCancelled.Error() + ": the terminal hung up; " + h.then
}
func (h hungUp) Unwrap() error { return recovery.ErrCancelled }

// runConsoleProgram runs the console with opt until it is quit or the terminal hangs up,
// and waits for the work it started (opt.Work) to clean up.
func runConsoleProgram(ctx context.Context, a *app, opt ui.Options) error {
	work := opt.Work
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
		return hungUp{then: "the incident stays open (run drconsole to resume it)"}
	}
	if runErr != nil && !errors.Is(runErr, tea.ErrProgramKilled) {
		return runErr
	}
	if ok && m.JournalErr() != nil {
		return m.JournalErr() // what happened is on the screen; the record of it is incomplete
	}
	return nil
}

// templateVars are the values the runbook's command templates name, from the resolved
// connection and the configured locations (the first S3 location is the primary bucket,
// the second the secondary).
func templateVars(cn *recovery.Conn, locs []storage.Location) map[string]string {
	vars := map[string]string{}
	if cn != nil {
		vars["DB_HOST"], vars["DB_PORT"], vars["DB_USER"], vars["DB_NAME"] = cn.Host, strconv.Itoa(int(cn.Port)), cn.User, cn.Database
	}
	buckets := []string{"S3_BUCKET", "S3_BUCKET_SECONDARY"}
	for _, l := range locs {
		switch l := l.(type) {
		case *storage.S3:
			if len(buckets) > 0 {
				vars[buckets[0]], buckets = l.Bucket(), buckets[1:]
			}
		case *storage.Dir:
			if vars["BACKUP_DIR"] == "" {
				vars["BACKUP_DIR"] = l.String()
			}
		}
	}
	return vars
}
