// Package incident is one incident as people work it: it turns a restore's events, its
// checks, the swap or abandon and the operator's actions into journal events, in one
// place. The command line and the console are two presenters of it, so both journal the
// same restore identically and the report reads the same.
package incident

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"drconsole/checklists"
	"drconsole/recovery"
)

// ErrJournal: the incident journal could not be written. An irreversible step (the swap)
// never happens unjournaled; everything else goes on, and the failure is shown.
var ErrJournal = errors.New("incident journal could not be written")

// ErrDrill: a drill never swaps or changes a live database.
var ErrDrill = errors.New("a drill never swaps: the restored copy is checked and then dropped")

// Engine is the work a restore attempt journals: recovery's own, or a test's stand-in for
// screens that are tested without a server.
type Engine interface {
	Restore(ctx context.Context, p *recovery.Plan, rep recovery.Reporter) (*recovery.Restored, error)
	Swap(ctx context.Context, r *recovery.Restored, rep recovery.Reporter, opts recovery.SwapOptions) (*recovery.Swapped, error)
	Abandon(ctx context.Context, r *recovery.Restored) error
}

// Recovery is the real engine.
var Recovery Engine = recoveryEngine{}

type recoveryEngine struct{}

func (recoveryEngine) Restore(ctx context.Context, p *recovery.Plan, rep recovery.Reporter) (*recovery.Restored, error) {
	return p.Restore(ctx, rep)
}

func (recoveryEngine) Swap(ctx context.Context, r *recovery.Restored, rep recovery.Reporter, opts recovery.SwapOptions) (*recovery.Swapped, error) {
	return r.Swap(ctx, rep, opts)
}

func (recoveryEngine) Abandon(ctx context.Context, r *recovery.Restored) error { return r.Abandon(ctx) }

// Run is an incident being worked: its journal (nil when the operator chose not to keep
// one), who is working it, and the engine. It is safe for use from several goroutines.
type Run struct {
	Operator string
	Engine   Engine

	// Sandbox: the server is a drill's sandbox (drconsole drill), where a drill's restore
	// is swapped in for real. Only the drill command's console sets it.
	Sandbox bool

	j     *checklists.Journal
	drill bool

	mu  sync.Mutex
	err error // the first journal write that failed
}

// New works the incident of journal j (nil: nothing is recorded, and nothing is a drill
// unless drill says so).
func New(j *checklists.Journal, operator string, drill bool) *Run {
	r := &Run{Operator: operator, Engine: Recovery, j: j, drill: drill}
	if j != nil {
		r.drill = r.drill || j.Incident().Drill
	}
	return r
}

// Journal is the incident's journal, or nil.
func (r *Run) Journal() *checklists.Journal { return r.j }

// Drill reports whether the incident is a drill.
func (r *Run) Drill() bool { return r.drill }

// Err is the first journal write that failed, or nil.
func (r *Run) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Record appends events in order. A failure is kept (see Err) and returned wrapped in
// ErrJournal; the events after a failed one are not attempted.
func (r *Run) Record(events ...checklists.Event) error {
	if r.j == nil {
		return nil
	}
	for _, e := range events {
		if err := r.j.Record(e); err != nil {
			err = fmt.Errorf("%w: %v", ErrJournal, err)
			r.mu.Lock()
			if r.err == nil {
				r.err = err
			}
			r.mu.Unlock()
			return err
		}
	}
	return nil
}

// ChooseBackup records the backup chosen for the restore.
func (r *Run) ChooseBackup(src recovery.Source, step int) error {
	ev := checklists.Event{Type: checklists.EventBackupChosen, Step: step, Backup: src.Backup.Name, Location: src.Location.Name(), Bytes: src.Backup.Size}
	if !src.Backup.Time.IsZero() {
		t := src.Backup.Time
		ev.BackupTime = &t
	}
	return r.Record(ev)
}

// checksStep is the step check results belong to: the scenario's checks step, else the
// restore's own step.
func (r *Run) checksStep(restoreStep int) int {
	if r.j == nil {
		return restoreStep
	}
	for i, s := range r.j.Incident().Plan.Steps {
		if s.Kind == checklists.KindChecks {
			return i + 1
		}
	}
	return restoreStep
}

// CheckEvents are the journal's record of check results, in the one form the CLI and the
// console both use.
func CheckEvents(step int, results []recovery.CheckResult) []checklists.Event {
	var out []checklists.Event
	for _, c := range results {
		out = append(out, checklists.Event{Type: checklists.EventCheckResult, Step: step, Title: c.Name, Result: string(c.Status), Detail: checkDetail(c)})
	}
	return out
}

// RowsEvent is the journal's record of each table's rows in a restore: archive, restored
// copy, live, and how the copy compared with the archive.
func RowsEvent(step int, rows []recovery.TableRows) checklists.Event {
	tables := make([]checklists.TableRows, len(rows))
	for i, t := range rows {
		tables[i] = checklists.TableRows{Name: t.Name, Archive: t.Archive, Restored: t.Restored, Live: t.Live, State: t.State()}
	}
	return checklists.Event{Type: checklists.EventRowsCounted, Step: step, Tables: tables}
}

// checkDetail is a check's expected and actual values and its explanation, on one line.
func checkDetail(c recovery.CheckResult) string {
	var parts []string
	if c.Expected != "" {
		parts = append(parts, "expected "+c.Expected)
	}
	if c.Actual != "" {
		parts = append(parts, "actual "+strings.ReplaceAll(c.Actual, "\n", "; "))
	}
	if c.Detail != "" {
		parts = append(parts, strings.ReplaceAll(c.Detail, "\n", "; "))
	}
	if c.Confirm && c.Status == recovery.CheckFail {
		parts = append(parts, "blocks the swap until confirmed")
	}
	return strings.Join(parts, "; ")
}

// Repair repairs what an interrupted swap left on the server and records what it did.
func (r *Run) Repair(ctx context.Context, c *recovery.Conn) ([]string, error) {
	did, err := recovery.Repair(ctx, c)
	for _, d := range did {
		r.Record(checklists.Event{Type: checklists.EventNote, Who: "drconsole", Note: "repaired: " + d})
	}
	return did, err
}

// outcome is the journal's word for an error: cancelled, or failed.
func outcome(err error) string {
	if errors.Is(err, recovery.ErrCancelled) || errors.Is(err, context.Canceled) {
		return checklists.ResultCancelled
	}
	return checklists.ResultFailed
}

func since(t time.Time) float64 { return time.Since(t).Seconds() }

// Checks are the runbook's application checks as the engine runs them.
func Checks(rb *checklists.Runbook) []recovery.Check {
	if rb == nil {
		return nil
	}
	var out []recovery.Check
	for _, d := range rb.Checks {
		out = append(out, recovery.Check{Name: d.Name, SQL: d.SQL, Table: d.Table, Rows: d.Rows, Compare: d.Compare,
			Database: d.Database, Expect: d.Expect, Warning: d.Warning})
	}
	return out
}
