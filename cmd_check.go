package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"drconsole/checklists"
	"drconsole/incident"
	"drconsole/recovery"
	"drconsole/storage"
	"drconsole/wal"
)

// checkResult is check's --json output.
type checkResult struct {
	Database   string                 `json:"database"`
	Server     string                 `json:"server"`
	Repaired   []string               `json:"repaired,omitempty"`
	Reconciled []string               `json:"reconciled,omitempty"`
	Checks     []recovery.CheckResult `json:"checks"`
	Leftovers  []recovery.Leftover    `json:"leftovers"`
	WAL        *wal.Status            `json:"wal,omitempty"` // WAL archiving against the runbook's RPO
	// Rows are each table's rows as the open incident's last restore of the database
	// counted them (archive, restored copy, live), from its journal.
	Rows        []recovery.TableRows `json:"rows,omitempty"`
	RowsRestore string               `json:"rows_restore,omitempty"` // that restore's backup`
	Dropped     []string             `json:"dropped,omitempty"`
	Error       string               `json:"error,omitempty"`
}

type checkOptions struct {
	conn        connFlags
	json        bool
	dropScratch bool
	dropKept    bool
}

func newCheckCmd(a *app) *cobra.Command {
	o := &checkOptions{}
	c := &cobra.Command{
		Use:   "check [flags]",
		Short: "check the live database; repair and list what earlier restores left",
		Example: `  DB_NAME=spywatcher drconsole check
  drconsole check --drop-leftovers
  DB_NAME=spywatcher drconsole check --json | jq '.checks[] | {name, status, actual}'`,
		Args: noArgs("; name the database with --db-url, DB_NAME or PGDATABASE"),
		RunE: func(c *cobra.Command, _ []string) error { return runCheck(c.Context(), a, o) },
	}
	f := c.Flags()
	o.conn.add(f)
	f.BoolVar(&o.json, "json", false, "print the checks as JSON on stdout")
	f.BoolVar(&o.dropScratch, "drop-leftovers", false, "drop the scratch copies that interrupted restores left on the server (never one a running restore is using)")
	f.BoolVar(&o.dropKept, "drop-kept", false, "drop the kept copies swaps made of the databases they replaced (rollback and forensics are gone after this)")
	return c
}

func runCheck(ctx context.Context, a *app, o *checkOptions) error {
	cn, err := o.conn.resolve(a)
	if err != nil {
		return err
	}
	a.warnPasswordInArgs(cn)
	if cn.Database == "" {
		return usagef("name the database to check (--db-url, DB_NAME, DATABASE_URL or PGDATABASE)")
	}
	out := checkResult{Database: cn.Database, Server: cn.Server(), Leftovers: []recovery.Leftover{}}
	err = check(ctx, a, cn, o.dropScratch, o.dropKept, o.json, &out)
	if o.json {
		if err != nil {
			out.Error = oneLine(err)
		}
		if werr := writeJSON(a.stdout, out); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

func check(ctx context.Context, a *app, cn *recovery.Conn, dropScratch, dropKept, quiet bool, out *checkResult) error {
	say := func(format string, args ...any) {
		if !quiet {
			fmt.Fprintf(a.stdout, format+"\n", args...)
		}
	}
	// What an interrupted swap left is repaired first: a database refusing connections is
	// an outage, and the checks below could not reach it.
	run := a.openIncidentForRepair()
	defer run.Close()
	repaired, err := run.Repair(ctx, cn)
	if err != nil {
		return err
	}
	out.Repaired = repaired
	if said, err := run.Reconcile(ctx, cn); err != nil {
		fmt.Fprintf(a.stderr, "drconsole check: earlier attempt: %v\n", err)
	} else {
		out.Reconciled = said
	}
	say("database %s on %s", cn.Database, cn.Server())
	for _, r := range out.Repaired {
		say("repaired: %s", r)
	}
	for _, r := range out.Reconciled {
		say("earlier attempt: %s", r)
	}
	// Reach the database first, so a typo'd name or a down server is one clear line; what
	// restores left on the server is listed all the same, since it may be why.
	db, reachErr := cn.Connect(ctx, cn.Database)
	if reachErr == nil {
		db.Close(context.Background())
		rb, _, err := loadRunbook(a)
		if err != nil {
			return err
		}
		out.Checks = recovery.RunChecks(ctx, cn, cn.Database, "", incident.Checks(rb))
		if !quiet {
			a2 := *a
			a2.stderr = a.stdout
			printChecks(&a2, out.Checks)
		}
		rpo := rb.Objectives.RPO
		if rpo <= 0 {
			rpo = time.Hour
		}
		out.WAL = a.walLine(ctx, cn, rpo, say)
		if r := lastRestoreWithRows(run.j, cn.Database); r != nil {
			out.RowsRestore = r.Backup
			for _, t := range r.Rows {
				out.Rows = append(out.Rows, recovery.TableRows{Name: t.Name, Archive: t.Archive, Restored: t.Restored, Live: t.Live})
			}
			if !quiet {
				say("the last restore of %s in this incident (%s, %s) counted:", cn.Database, storage.Printable(r.Backup), r.Started.UTC().Format("2006-01-02 15:04 UTC"))
				a2 := *a
				a2.stderr = a.stdout
				printRows(&a2, out.Rows)
			}
		}
	} else {
		reachErr = explainUnreachable(reachErr, cn.Database)
		say("%s cannot be checked: %v", cn.Database, reachErr)
	}

	list, err := recovery.FindLeftovers(ctx, cn)
	if err != nil {
		return err
	}
	now := time.Now()
	if len(list) > 0 {
		say("left on the server by earlier restores:")
	}
	var dropErr error
	for _, l := range list {
		drop := l.Droppable() && (l.Role == recovery.RoleScratch && dropScratch || l.Role == recovery.RoleKept && dropKept)
		if !drop {
			out.Leftovers = append(out.Leftovers, l)
			say("  %s", l.Describe(now))
			continue
		}
		if err := recovery.DropLeftover(ctx, cn, l.Name); err != nil {
			out.Leftovers = append(out.Leftovers, l)
			say("  %s: NOT dropped: %v", l.Describe(now), err)
			dropErr = errors.Join(dropErr, err)
			continue
		}
		out.Dropped = append(out.Dropped, l.Name)
		run.Record(checklists.Event{Type: checklists.EventNote, Who: checklists.Operator(a.getenv), Note: "dropped " + l.Describe(now) + " (drconsole check)"})
		say("  %s: dropped", l.Describe(now))
	}
	if n := countRole(out.Leftovers, recovery.RoleScratch); n > 0 && !dropScratch {
		say("drop the scratch copies with: drconsole check --drop-leftovers")
	}
	if reachErr != nil {
		return reachErr
	}
	if failed := recovery.Failed(out.Checks); len(failed) > 0 {
		return fmt.Errorf("%w: %s: %s", recovery.ErrChecksFailed, failed[0].Name, failed[0].Detail)
	}
	if dropErr != nil {
		return dropErr
	}
	return run.Err()
}

// walLine says whether WAL archiving keeps the RPO (wal-status in one line); it does not
// change check's outcome.
func (a *app) walLine(ctx context.Context, cn *recovery.Conn, rpo time.Duration, say func(string, ...any)) *wal.Status {
	locs, err := a.walLocations(ctx, nil)
	if err != nil {
		say("WAL archiving: not judged: %v", err)
		return nil
	}
	conn, err := cn.Connect(ctx, cn.Database)
	if err != nil {
		return nil
	}
	defer conn.Close(context.WithoutCancel(ctx))
	st, err := wal.Check(ctx, conn, cn.Server(), locs, rpo)
	if err != nil {
		say("WAL archiving: not judged: %v", err)
		return nil
	}
	if st.Holds {
		say("WAL archiving: the RPO of %s holds (last archived %s)", wal.DurationWord(st.RPO), st.LastArchived)
	} else {
		say("WAL archiving: the RPO of %s does not hold: %s (drconsole wal-status says what to set)", wal.DurationWord(st.RPO), st.Why[0])
	}
	return st
}

// lastRestoreWithRows is the open incident's last restore of database whose rows were
// counted, or nil.
func lastRestoreWithRows(j *checklists.Journal, database string) *checklists.RestoreRecord {
	if j == nil {
		return nil
	}
	inc := j.Incident()
	for i := len(inc.Restores) - 1; i >= 0; i-- {
		if r := &inc.Restores[i]; r.Database == database && len(r.Rows) > 0 {
			return r
		}
	}
	return nil
}

// explainUnreachable adds what to do when the database exists but refuses connections
// and drconsole's repair left it so (drconsole never closes a database; someone did).
func explainUnreachable(err error, database string) error {
	if strings.Contains(err.Error(), "not currently accepting connections") {
		return fmt.Errorf("%w; drconsole did not close it and does not reopen a database someone else closed: reopen it with ALTER DATABASE %s ALLOW_CONNECTIONS true when that is right", err, pgx.Identifier{database}.Sanitize())
	}
	return err
}

// countRole counts the leftovers of a role that drconsole would drop.
func countRole(list []recovery.Leftover, role string) int {
	n := 0
	for _, l := range list {
		if l.Role == role && l.Droppable() {
			n++
		}
	}
	return n
}

// repairRun is the incident run check repairs and reconciles in: the open incident of
// this state directory, when there is one and no other drconsole has it open; else one
// that records nothing.
type repairRun struct {
	*incident.Run
	j *checklists.Journal
}

func (r repairRun) Close() {
	if r.j != nil {
		r.j.Close()
	}
}

func (a *app) openIncidentForRepair() repairRun {
	j, err := checklists.OpenLatest(checklists.StateDir(a.stateDir, a.getenv))
	if err != nil {
		return repairRun{Run: incident.New(nil, checklists.Operator(a.getenv), false)}
	}
	return repairRun{Run: incident.New(j, checklists.Operator(a.getenv), false), j: j}
}
