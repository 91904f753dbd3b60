package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"drconsole/checklists"
	"drconsole/incident"
	"drconsole/recovery"
	"drconsole/storage"
)

// restoreResult is restore's --json output.
type restoreResult struct {
	Backup     storage.Backup         `json:"backup"`
	Location   string                 `json:"location"`
	Skipped    []storage.Skip         `json:"skipped_locations,omitempty"`
	Repaired   []string               `json:"repaired,omitempty"`   // what an interrupted swap left, repaired first
	Reconciled []string               `json:"reconciled,omitempty"` // earlier attempts of the incident, finished from the server's state
	Mode       recovery.Mode          `json:"mode"`
	Target     string                 `json:"target"`
	Scratch    string                 `json:"scratch"`
	Kept       string                 `json:"kept,omitempty"`
	Server     string                 `json:"server"`
	Result     string                 `json:"result"` // ok only when the restored copy is live, or the test restore made
	Swapped    bool                   `json:"swapped"`
	Checks     []recovery.CheckResult `json:"checks"`
	Leftovers  []recovery.Leftover    `json:"leftovers,omitempty"`
	Read       int64                  `json:"bytes_read"`
	Dump       int64                  `json:"dump_bytes"`
	Tables     int                    `json:"tables"`
	Rows       []tableRows            `json:"rows,omitempty"` // custom format: each table's rows in the archive, the copy and live
	Seconds    float64                `json:"seconds"`
	Warnings   []string               `json:"warnings,omitempty"`
	Journal    string                 `json:"journal,omitempty"`
	Error      string                 `json:"error,omitempty"`
}

// restoreOptions are restore's flags.
type restoreOptions struct {
	conn        connFlags
	key         keyFlags
	yes         bool
	testDB      string
	fromDB      string
	load        loadFlags
	accept      bool
	json        bool
	scenario    string
	drill       bool
	noJournal   bool
	incident    string
	newIncident bool
	pitr        pitrFlags
	// journal is the incident a point-in-time recovery already opened and recorded in:
	// the restore of its dump goes on in it.
	journal *checklists.Journal
}

func newRestoreCmd(a *app) *cobra.Command {
	o := &restoreOptions{}
	c := &cobra.Command{
		Use:   "restore [flags] BACKUP | --to-time TIME --pgdata DIR",
		Short: "restore a backup into a scratch database, check it, swap it in",
		Long: `Restores BACKUP (a path, a backup name, an s3:// URL, or latest) into a scratch database,
checks it there, and — once the operator types the database name, or with --yes — swaps it
in for the live database in one transaction, keeping the old one. Any failure or cancel
drops the scratch database and leaves the live one as it was.`,
		Example: `  DB_HOST=db1 DB_USER=postgres DB_NAME=spywatcher drconsole restore --gpg-key ops-secret.asc latest
  drconsole restore --yes --gpg-key ops-secret.asc --signer-key job-public.asc spywatcher_full_20240125_120000.dump.gz.gpg
  drconsole restore --target-db spywatcher_monthly latest   # the monthly restore test: no swap`,
		Args: func(c *cobra.Command, args []string) error {
			if o.pitr.wanted() {
				return noArgs(": --to-time and --to-latest restore from base backups and the WAL archive, not from a BACKUP")(c, args)
			}
			return oneBackupArg(c, args)
		},
		RunE: func(c *cobra.Command, args []string) error {
			if o.pitr.wanted() {
				return runPITR(c.Context(), a, c, o)
			}
			return runRestore(c.Context(), a, c, o, args[0])
		},
	}
	f := c.Flags()
	o.conn.add(f)
	o.key.add(f)
	f.BoolVar(&o.yes, "yes", false, "swap without asking the operator to type the database name")
	f.StringVar(&o.testDB, "target-db", "", "restore into this new `database`, run the checks and stop, without any swap (the monthly restore test)")
	f.StringVar(&o.fromDB, "from-db", "", "the `database` the backup was taken from, when it is not the target: a backup of another database is refused unless named here")
	o.load.add(f)
	f.BoolVar(&o.accept, "accept-missing-tables", false, "with --yes: swap even when the live database has tables the restored copy lacks")
	f.BoolVar(&o.json, "json", false, "print the result as JSON on stdout")
	f.StringVar(&o.scenario, "scenario", checklists.DefaultScenario, "runbook `scenario` of the incident to start when none is open")
	f.BoolVar(&o.drill, "drill", false, "a drill: restore and check for real in a scratch database, then drop it; nothing is ever swapped")
	f.BoolVar(&o.noJournal, "no-journal", false, "do not record the restore in an incident journal")
	f.StringVar(&o.incident, "incident", "", "record the restore in this open `incident` (an id or a unique prefix; default: the open one of its kind, when it is recent)")
	f.BoolVar(&o.newIncident, "new-incident", false, "start a new incident for the restore even when one is open")
	o.pitr.add(f)
	return c
}

func runRestore(ctx context.Context, a *app, c *cobra.Command, o *restoreOptions, backup string) error {
	if c.Flags().Changed("target-db") {
		if err := recovery.ValidTarget(o.testDB); err != nil {
			return usageError{fmt.Errorf("--target-db: %w", err)}
		}
	}
	if c.Flags().Changed("from-db") && o.fromDB == "" {
		return usagef("--from-db needs the name of the database the backup was taken from")
	}
	// A swap needs the operator to type the database's name: without a terminal to type it
	// on, say so now rather than after an hour of restoring.
	if !o.yes && !c.Flags().Changed("target-db") && !o.drill && !a.stdinIsTerminal() {
		return usagef("restore swaps only when the operator types the database name, and standard input is not a terminal: give --yes to swap without asking (cron, CI), or --target-db NAME for a test restore")
	}
	cn, err := o.conn.resolve(a)
	if err != nil {
		return err
	}
	a.warnPasswordInArgs(cn)
	keys, err := o.key.keys(a)
	if err != nil {
		return err
	}
	src, skipped, err := a.oneBackup(ctx, backup, a.backupPrefixes(cn.Database))
	if err != nil {
		return err
	}

	j := o.journal
	if j == nil {
		if j, err = a.restoreJournal(ctx, c, o, cn, keys); err != nil {
			return err
		}
		if j != nil {
			defer j.Close()
		}
	}
	run := incident.New(j, checklists.Operator(a.getenv), o.drill)
	out := restoreResult{Backup: src.Backup, Location: src.Location.Name(), Skipped: skipped}
	if j != nil {
		out.Journal = j.Path()
	}
	rb, _, err := loadRunbook(a)
	if err != nil {
		return err
	}
	opts := o.load.options(recovery.Options{Conn: cn, Keys: keys, TestDB: o.testDB, FromDB: o.fromDB, Checks: incident.Checks(rb)})
	err = restore(ctx, a, run, src, opts, restoreChoices{yes: o.yes, accept: o.accept, quiet: o.json}, &out)
	if err == nil && run.Err() != nil {
		err = fmt.Errorf("the restore itself is done (%s), but %w", out.Result, run.Err())
	} else if err != nil && run.Err() != nil && !errors.Is(err, incident.ErrJournal) {
		fmt.Fprintf(a.stderr, "drconsole restore: and %v\n", run.Err())
	}
	if o.json {
		if err != nil {
			out.Error = oneLine(err)
		}
		writeJSON(a.stdout, out)
	}
	return err
}

// restoreJournal opens the incident a restore is recorded in, as --incident,
// --new-incident, --scenario and --drill choose (nil with --no-journal), and says which.
func (a *app) restoreJournal(ctx context.Context, c *cobra.Command, o *restoreOptions, cn *recovery.Conn, keys *recovery.Keys) (*checklists.Journal, error) {
	if o.noJournal {
		return nil, nil
	}
	choice := journalChoice{scenario: o.scenario, scenarioSet: c.Flags().Changed("scenario"), drill: o.drill, incident: o.incident, newIncident: o.newIncident}
	j, err := a.incidentJournal(ctx, choice)
	if err != nil {
		if isUsageError(err) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", incident.ErrJournal, err)
	}
	if cn != nil {
		j.AddSecret(cn.Password)
	}
	if keys != nil {
		j.AddSecret(string(keys.Passphrase))
	}
	if !o.json {
		fmt.Fprintf(a.stderr, "journal: %s\n", j.Path())
	}
	return j, nil
}

type restoreChoices struct {
	yes, accept, quiet bool
}

func restore(ctx context.Context, a *app, run *incident.Run, src recovery.Source, opts recovery.Options, ch restoreChoices, out *restoreResult) error {
	say := func(format string, args ...any) {
		if !ch.quiet {
			fmt.Fprintf(a.stderr, format+"\n", args...)
		}
	}
	// What an interrupted run left: repaired on the server, finished in the journal.
	if did, err := run.Repair(ctx, opts.Conn); err == nil {
		out.Repaired = did
		for _, d := range did {
			say("repaired: %s", d)
		}
	}
	if said, err := run.Reconcile(ctx, opts.Conn); err != nil {
		say("earlier attempt: %v", err)
	} else {
		out.Reconciled = said
		for _, s := range said {
			say("earlier attempt: %s", s)
		}
	}
	step := restoreStep(run.Journal())
	run.ChooseBackup(src, step)
	plan, err := recovery.Prepare(ctx, src, opts)
	if err != nil {
		out.Result = checklists.ResultFailed
		return err
	}
	defer plan.Release()
	out.Mode, out.Target, out.Scratch, out.Kept, out.Server, out.Leftovers = plan.Mode, plan.Target, plan.Scratch, plan.Kept, plan.Server, plan.Leftovers
	if run.Drill() {
		say("plan: a drill: %s; it is then dropped, nothing is swapped", plan.DescribeLoad())
	} else {
		say("plan: %s", plan.Describe())
	}
	for _, p := range plan.Passed {
		say("  ok  %s", p)
	}
	for _, w := range plan.Warnings {
		say("  !!  %s", w)
	}

	att, err := run.Restore(ctx, plan, step, newProgress(a, "restore", ch.quiet))
	r := att.Restored()
	if rr := att.Last(); rr != nil {
		out.Checks, out.Read, out.Dump, out.Tables, out.Seconds, out.Warnings = rr.Checks, rr.Read, rr.Dump, rr.Tables, rr.Duration.Seconds(), rr.Warnings
		out.Rows = rowsJSON(rr.Rows)
		if len(rr.Checks) > 0 && !ch.quiet {
			printChecks(a, rr.Checks)
		}
		if !ch.quiet {
			printRows(a, rr.Rows)
		}
	}
	if err != nil {
		out.Result = outcomeWord(err)
		return err
	}
	say("restored %s of dump (%d tables) in %s", humanBytes(out.Dump), out.Tables, shortDuration(time.Duration(out.Seconds*float64(time.Second))))
	if plan.Mode == recovery.ModeTest {
		out.Result = checklists.ResultOK
		say("test restore: %s holds the backup; nothing was swapped", plan.Target)
		return nil
	}
	if run.Drill() {
		err := att.Abandon(context.Background(), "drill: the restored copy was checked; a drill never swaps")
		out.Result = checklists.ResultAbandoned
		if err != nil {
			return fmt.Errorf("drill: the restored copy %s could not be dropped: %w", plan.Scratch, err)
		}
		say("drill: %s was restored and checked, then dropped; %s is untouched", plan.Scratch, plan.Target)
		return nil
	}
	accept := ch.accept
	if !ch.yes {
		prompt := fmt.Sprintf("Type the database name %q to swap the restored copy in (anything else abandons it): ", plan.Target)
		if plan.Mode == recovery.ModeCreate {
			prompt = fmt.Sprintf("Type the database name %q to create it from the restored copy: ", plan.Target)
		}
		if missing := recovery.Unconfirmed(r.Checks); len(missing) > 0 {
			say("!! %s: %s", missing[0].Name, missing[0].Detail)
			prompt = fmt.Sprintf("Type the database name %q to swap the restored copy in ANYWAY (anything else abandons it): ", plan.Target)
			accept = true // typed after being shown what is missing
		}
		if !a.confirm(ctx, prompt, plan.Target) {
			why := "not confirmed"
			if ctx.Err() != nil {
				why = "stopped at the confirmation"
			}
			if aerr := att.Abandon(context.Background(), why); aerr != nil {
				fmt.Fprintf(a.stderr, "drconsole: could not drop scratch database %s: %v\n", plan.Scratch, aerr)
			}
			out.Result = checklists.ResultAbandoned
			return fmt.Errorf("%w: %s; %s dropped, %s untouched", recovery.ErrCancelled, why, plan.Scratch, plan.Target)
		}
	}
	sw, err := att.Swap(ctx, newProgress(a, "swap", ch.quiet), accept)
	if err != nil {
		if errors.Is(err, recovery.ErrSwapUnknown) {
			out.Result = checklists.ResultUnknown
			return err // the restored copy stays: it may be the live database now
		}
		if aerr := att.Abandon(context.Background(), "the swap did not happen"); aerr != nil {
			fmt.Fprintf(a.stderr, "drconsole: could not drop scratch database %s: %v\n", plan.Scratch, aerr)
		}
		out.Result = outcomeWord(err)
		return err
	}
	out.Swapped, out.Result, out.Kept = true, checklists.ResultOK, sw.Kept
	if sw.Note != "" {
		say("note: %s", sw.Note)
	}
	if sw.Kept != "" {
		say("done: %s is the restored database; the previous one is kept as %s (drop it when no longer needed: drconsole check --drop-kept)", sw.Live, sw.Kept)
	} else {
		say("done: %s created from %s", sw.Live, storage.Printable(src.Backup.Name))
	}
	return nil
}

func outcomeWord(err error) string {
	if errors.Is(err, recovery.ErrCancelled) || errors.Is(err, context.Canceled) {
		return checklists.ResultCancelled
	}
	return checklists.ResultFailed
}

func (a *app) stdinIsTerminal() bool {
	f, ok := a.stdin.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// warnPasswordInArgs says once that a password on the command line is readable by every
// user of the machine, and what to use instead.
func (a *app) warnPasswordInArgs(cn *recovery.Conn) {
	if cn.PasswordInArgs {
		fmt.Fprintln(a.stderr, "drconsole: warning: the password in --db-url is visible to every user of this machine (ps); use DB_PASSWORD, PGPASSWORD or ~/.pgpass instead")
	}
}

func printChecks(a *app, checks []recovery.CheckResult) {
	fmt.Fprintln(a.stderr, "checks:")
	for _, c := range checks {
		status := strings.ToUpper(string(c.Status))
		if c.Confirm && c.Status == recovery.CheckFail {
			status = "HOLD"
		}
		line := fmt.Sprintf("  %-5s %-32s %s", status, c.Name, c.Actual)
		if c.Expected != "" && c.Expected != c.Actual {
			line += " (expected " + c.Expected + ")"
		}
		if c.Detail != "" && !strings.Contains(c.Detail, "\n") && c.Status != recovery.CheckInfo {
			line += " — " + c.Detail
		}
		fmt.Fprintln(a.stderr, strings.TrimRight(line, " "))
		if c.Status == recovery.CheckInfo && c.Detail != "" { // listed rows, or the live figure
			for _, row := range strings.Split(c.Detail, "\n") {
				fmt.Fprintf(a.stderr, "          %s\n", row)
			}
		}
	}
}

// tableRows is a table's rows in --json: in the archive, the restored copy and the live
// database (-1: not known), and how the copy compares with the archive (ok, differs,
// missing, uncounted).
type tableRows struct {
	Name     string `json:"name"`
	Archive  int64  `json:"archive"`
	Restored int64  `json:"restored"`
	Live     int64  `json:"live"`
	State    string `json:"state"`
}

func rowsJSON(rows []recovery.TableRows) []tableRows {
	var out []tableRows
	for _, t := range rows {
		out = append(out, tableRows{Name: t.Name, Archive: t.Archive, Restored: t.Restored, Live: t.Live, State: t.State()})
	}
	return out
}

// printRows shows every table's rows after the checks, the ones that match too: they are
// the proof that every row arrived. A table whose copy differs from the archive says so
// in capitals, and the last line counts them.
func printRows(a *app, rows []recovery.TableRows) {
	if len(rows) == 0 {
		return
	}
	names := make([]string, len(rows))
	nameW, numW := len("table"), len("restored")
	unknown := false
	for i, t := range rows {
		names[i] = storage.Printable(t.Name) // the backup's words
		nameW = max(nameW, utf8.RuneCountInString(names[i]))
		for _, n := range []int64{t.Archive, t.Restored, t.Live} {
			numW = max(numW, len(rowCount(n)))
			unknown = unknown || n < 0
		}
	}
	nameW = min(nameW, 60)
	line := func(state, name, archive, restored, live string) {
		pad := strings.Repeat(" ", max(nameW-utf8.RuneCountInString(name), 0))
		fmt.Fprintf(a.stderr, "  %-9s %s%s  %*s  %*s  %*s\n", state, name, pad, numW, archive, numW, restored, numW, live)
	}
	fmt.Fprintln(a.stderr, "rows of every table:")
	line("", "table", "archive", "restored", "live")
	var bad []string
	uncounted := 0
	for i, t := range rows {
		state := t.State()
		switch state {
		case recovery.RowsDiffer, recovery.RowsMissing:
			bad = append(bad, names[i])
			state = strings.ToUpper(state)
		case recovery.RowsUncounted:
			uncounted++
		}
		line(state, names[i], rowCount(t.Archive), rowCount(t.Restored), rowCount(t.Live))
	}
	switch {
	case len(bad) > 0:
		fmt.Fprintf(a.stderr, "  %d of %d tables DIFFER from the archive: %s\n", len(bad), len(rows), strings.Join(bad, ", "))
	case uncounted > 0:
		fmt.Fprintf(a.stderr, "  %d of %d tables as in the archive; %d not counted\n", len(rows)-uncounted, len(rows), uncounted)
	default:
		fmt.Fprintf(a.stderr, "  %d tables, every row as in the archive\n", len(rows))
	}
	if unknown {
		fmt.Fprintln(a.stderr, "  ?: not known (not counted, no such table, or no live database to compare with)")
	}
}
