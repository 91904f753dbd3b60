package main

import (
	"context"
	"fmt"
	"strings"

	"drconsole/checklists"
	"drconsole/recovery"
	"drconsole/storage"
)

func init() {
	register(&command{
		name:    "restore",
		usage:   "restore [--yes] [--gpg-key FILE] [--passphrase-file FILE] [--target-db NAME] [--json] BACKUP",
		summary: "restore a backup into a scratch database, check it, and swap it in for the live one",
		run:     runRestore,
	})
}

// restoreResult is restore's --json output.
type restoreResult struct {
	Backup   storage.Backup         `json:"backup"`
	Location string                 `json:"location"`
	Skipped  []storage.Skip         `json:"skipped_locations,omitempty"`
	Mode     recovery.Mode          `json:"mode"`
	Target   string                 `json:"target"`
	Scratch  string                 `json:"scratch"`
	Kept     string                 `json:"kept,omitempty"`
	Server   string                 `json:"server"`
	Swapped  bool                   `json:"swapped"`
	Checks   []recovery.CheckResult `json:"checks"`
	Read     int64                  `json:"bytes_read"`
	Dump     int64                  `json:"dump_bytes"`
	Tables   int                    `json:"tables"`
	Seconds  float64                `json:"seconds"`
	Warnings []string               `json:"warnings,omitempty"`
	Error    string                 `json:"error,omitempty"`
}

func runRestore(ctx context.Context, a *app, args []string) error {
	c := commands["restore"]
	fs := a.flags(c)
	var conn connFlags
	var key keyFlags
	conn.add(fs)
	key.add(fs)
	yes := fs.Bool("yes", false, "swap without asking the operator to type the database name")
	testDB := fs.String("target-db", "", "restore into this new `database`, run the checks and stop, without any swap (the monthly restore test)")
	noOwner := fs.Bool("no-owner", false, "do not restore object ownership (when the archive's roles do not exist on the target)")
	asJSON := fs.Bool("json", false, "print the result as JSON on stdout")
	scenario := fs.String("scenario", checklists.DefaultScenario, "runbook `scenario` of the incident to start when none is open")
	drill := fs.Bool("drill", false, "record a new incident as a drill")
	noJournal := fs.Bool("no-journal", false, "do not record the restore in an incident journal")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("restore needs exactly one BACKUP (a path, a name, an s3:// URL or latest)")
	}
	cn, err := conn.resolve(a)
	if err != nil {
		return err
	}
	keys, err := key.keys(a)
	if err != nil {
		return err
	}
	src, skipped, err := a.oneBackup(ctx, pos, "restore")
	if err != nil {
		return err
	}

	var j *checklists.Journal
	if !*noJournal {
		if j, err = a.incidentJournal(*scenario, *drill); err != nil {
			return fmt.Errorf("incident journal: %w", err)
		}
		defer j.Close()
		j.AddSecret(cn.Password)
		j.AddSecret(string(keys.Passphrase))
		journalBackupChosen(j, src)
		if !*asJSON {
			fmt.Fprintf(a.stderr, "journal: %s\n", j.Path())
		}
	}
	out := restoreResult{Backup: src.Backup, Location: src.Location.Name(), Skipped: skipped}
	err = restore(ctx, a, src, recovery.Options{Conn: cn, Keys: keys, TestDB: *testDB, NoOwner: *noOwner}, *yes, *asJSON, &out, j)
	if *asJSON {
		if err != nil {
			out.Error = oneLine(err)
		}
		writeJSON(a.stdout, out)
	}
	return err
}

func restore(ctx context.Context, a *app, src recovery.Source, opts recovery.Options, yes, quiet bool, out *restoreResult, j *checklists.Journal) error {
	say := func(format string, args ...any) {
		if !quiet {
			fmt.Fprintf(a.stderr, format+"\n", args...)
		}
	}
	plan, err := recovery.Prepare(ctx, src, opts)
	if err != nil {
		return err
	}
	out.Mode, out.Target, out.Scratch, out.Kept, out.Server = plan.Mode, plan.Target, plan.Scratch, plan.Kept, plan.Server
	say("plan: %s", plan.Describe())
	for _, p := range plan.Passed {
		say("  ok  %s", p)
	}
	for _, w := range plan.Warnings {
		say("  !!  %s", w)
	}

	prog := newProgress(a, "restore", quiet)
	if j != nil {
		j.Record(checklists.Event{Type: checklists.EventRestoreStarted, Backup: src.Backup.Name, Database: plan.Target, ScratchDB: plan.Scratch})
		prog.onEvent = journalEvents(j, src.Backup.Name)
	}
	r, err := plan.Restore(ctx, prog)
	if j != nil && r != nil {
		journalChecks(j, r.Checks)
	}
	if r != nil {
		out.Checks, out.Read, out.Dump, out.Tables, out.Seconds, out.Warnings = r.Checks, r.Read, r.Dump, r.Tables, r.Duration.Seconds(), r.Warnings
	}
	if r != nil && len(r.Checks) > 0 && !quiet {
		printChecks(a, r.Checks)
	}
	if err != nil {
		return err
	}
	// From here the scratch database exists: anything but a swap drops it.
	defer func() {
		if aerr := r.Abandon(context.Background()); aerr != nil {
			fmt.Fprintf(a.stderr, "drconsole: could not drop scratch database %s: %v\n", plan.Scratch, aerr)
		}
	}()
	say("restored %s of dump (%d tables) in %s", humanBytes(r.Dump), r.Tables, shortDuration(r.Duration))
	if plan.Mode == recovery.ModeTest {
		say("test restore: %s holds the backup; nothing was swapped", plan.Target)
		return nil
	}
	if !yes {
		prompt := fmt.Sprintf("Type the database name %q to swap the restored copy in (anything else abandons it): ", plan.Target)
		if plan.Mode == recovery.ModeCreate {
			prompt = fmt.Sprintf("Type the database name %q to create it from the restored copy: ", plan.Target)
		}
		if !a.confirm(ctx, prompt, plan.Target) {
			if ctx.Err() != nil {
				return fmt.Errorf("%w: stopped at the confirmation; %s dropped, %s untouched", recovery.ErrCancelled, plan.Scratch, plan.Target)
			}
			return fmt.Errorf("%w: not confirmed; %s dropped, %s untouched", recovery.ErrCancelled, plan.Scratch, plan.Target)
		}
	}
	swapProg := newProgress(a, "swap", quiet)
	if j != nil {
		swapProg.onEvent = func(e recovery.Event) {
			j.Record(checklists.Event{Type: checklists.EventRestoreProgress, Milestone: "swap: " + e.Message})
		}
	}
	sw, err := r.Swap(ctx, swapProg)
	if err != nil {
		return err
	}
	if j != nil {
		j.Record(checklists.Event{Type: checklists.EventRestoreFinished, Result: checklists.ResultOK, Backup: src.Backup.Name, Database: sw.Live, ScratchDB: plan.Scratch, KeptDB: sw.Kept, Bytes: r.Read, Seconds: r.Duration.Seconds(), Detail: "swapped in"})
	}
	out.Swapped = true
	if sw.Kept != "" {
		say("done: %s is the restored database; the previous one is kept as %s (drop it when no longer needed)", sw.Live, sw.Kept)
	} else {
		say("done: %s created from %s", sw.Live, src.Backup.Name)
	}
	return nil
}

func printChecks(a *app, checks []recovery.CheckResult) {
	fmt.Fprintln(a.stderr, "checks:")
	for _, c := range checks {
		line := fmt.Sprintf("  %-5s %-32s %s", strings.ToUpper(string(c.Status)), c.Name, c.Actual)
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
