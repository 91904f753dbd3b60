package incident

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"drconsole/checklists"
	"drconsole/recovery"
)

// Attempt is one restore attempt of the incident, from restore_started to its outcome:
// ok (the restored copy is live, or the test restore is made), failed, cancelled or
// abandoned. Its events are written before and after each step, so that the journal's
// last word about it matches the server.
type Attempt struct {
	Step int
	Plan *recovery.Plan

	run   *Run
	start time.Time

	last *recovery.Restored // what the engine returned, failed or not: its figures and checks

	mu       sync.Mutex
	restored *recovery.Restored // loaded and checked, waiting for its swap or abandon
	finished bool               // restore_finished recorded
}

// Last is what the restore returned, whatever its outcome (its figures and checks), or nil.
func (a *Attempt) Last() *recovery.Restored { return a.last }

// Restore restores plan's backup into its scratch database and checks it, recording the
// attempt's start, its stages, its checks and, when it failed or is a test restore, its
// outcome. rep gets every event as the engine reports it. A journal that cannot be
// written does not stop the restore (nothing irreversible happens in it); Run.Err says so.
func (r *Run) Restore(ctx context.Context, plan *recovery.Plan, step int, rep recovery.Reporter) (*Attempt, error) {
	if rep == nil {
		rep = recovery.Discard
	}
	a := &Attempt{Step: step, Plan: plan, run: r, start: time.Now()}
	r.Record(checklists.Event{Type: checklists.EventRestoreStarted, Step: step, Backup: plan.Source.Backup.Name, Mode: string(plan.Mode),
		Database: plan.Target, ScratchDB: plan.Scratch, KeptDB: plan.Kept})
	restored, err := r.Engine.Restore(ctx, plan, r.milestones(step, rep))
	a.last = restored
	if restored != nil && len(restored.Checks) > 0 {
		r.Record(CheckEvents(r.checksStep(step), restored.Checks)...)
	}
	if restored != nil && len(restored.Rows) > 0 {
		r.Record(RowsEvent(step, restored.Rows))
	}
	var bytes int64
	if restored != nil {
		bytes = restored.Read
	}
	switch {
	case err != nil:
		a.finish(checklists.Event{Result: outcome(err), Error: err.Error(), Bytes: bytes,
			Detail: fmt.Sprintf("nothing was swapped; %s is untouched", plan.Target)})
	case plan.Mode == recovery.ModeTest:
		a.finish(checklists.Event{Result: checklists.ResultOK, Bytes: bytes, Database: plan.Target,
			Detail: fmt.Sprintf("test restore: %s holds the backup and passed its checks; nothing was swapped", plan.Target)})
	default:
		a.restored = restored
		r.Record(checklists.Event{Type: checklists.EventRestoreLoaded, Step: step, Result: checklists.ResultOK, Bytes: bytes, Seconds: since(a.start)})
	}
	return a, err
}

// milestones passes every event on to rep and records drconsole's own stage messages
// (not the tool's lines, not the figures) as the attempt's milestones.
func (r *Run) milestones(step int, rep recovery.Reporter) recovery.Reporter {
	if rep == nil {
		rep = recovery.Discard
	}
	var mu sync.Mutex
	return recovery.ReporterFunc(func(e recovery.Event) {
		if e.Message != "" && !e.Tool && !e.Final {
			mu.Lock() // the engine reports from several goroutines: keep the journal's order
			r.Record(checklists.Event{Type: checklists.EventRestoreProgress, Step: step, Milestone: fmt.Sprintf("%s: %s", e.Stage, e.Message)})
			mu.Unlock()
		}
		rep.Report(e)
	})
}

// Restored is the checked copy waiting for its swap or abandon, or nil.
func (a *Attempt) Restored() *recovery.Restored {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.restored
}

// Finished reports whether the attempt has its outcome.
func (a *Attempt) Finished() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.finished
}

// finish records the attempt's outcome once: e is restore_finished's fields.
func (a *Attempt) finish(e checklists.Event) {
	a.mu.Lock()
	if a.finished {
		a.mu.Unlock()
		return
	}
	a.finished, a.restored = true, nil
	a.mu.Unlock()
	e.Type, e.Step, e.Backup = checklists.EventRestoreFinished, a.Step, a.Plan.Source.Backup.Name
	if e.Database == "" {
		e.Database = a.Plan.Target
	}
	e.Seconds = since(a.start)
	a.run.Record(e)
}

// Swap puts the restored copy in place (see recovery.Restored.Swap). The swap is recorded
// before it happens — if that record cannot be written, there is no swap — and after it,
// with what the server's catalog says happened. accept: the operator confirmed a swap
// that a check would otherwise block (tables live has and the copy lacks). A drill never
// swaps, but in its own sandbox.
func (a *Attempt) Swap(ctx context.Context, rep recovery.Reporter, accept bool) (*recovery.Swapped, error) {
	r := a.run
	restored := a.Restored()
	switch {
	case r.drill && !r.Sandbox:
		return nil, ErrDrill
	case restored == nil:
		return nil, fmt.Errorf("the restore of %s is not waiting for a swap", a.Plan.Target)
	}
	if missing := recovery.Unconfirmed(restored.Checks); accept && len(missing) > 0 {
		if err := r.Record(checklists.Event{Type: checklists.EventNote, Who: r.Operator, Note: fmt.Sprintf("swap confirmed although %s: %s", missing[0].Name, missing[0].Detail)}); err != nil {
			return nil, fmt.Errorf("swap not started, %s is unchanged: %w", a.Plan.Target, err)
		}
	}
	started := false
	opts := recovery.SwapOptions{AcceptMissingTables: accept, Intent: func(in recovery.SwapIntent) error {
		err := r.Record(checklists.Event{Type: checklists.EventSwapStarted, Step: a.Step, Mode: string(in.Mode), Database: in.Target,
			ScratchDB: in.Scratch, KeptDB: in.Kept, TargetOID: in.TargetOID, ScratchOID: in.ScratchOID})
		started = err == nil
		return err
	}}
	sw, err := r.Engine.Swap(ctx, restored, r.milestones(a.Step, rep), opts)
	switch {
	case err == nil:
		detail := fmt.Sprintf("%s is the restored copy", sw.Live)
		if sw.Kept != "" {
			detail += fmt.Sprintf("; the previous database is kept as %s", sw.Kept)
		}
		if sw.Note != "" {
			detail += " (" + sw.Note + ")"
		}
		r.Record(checklists.Event{Type: checklists.EventSwapFinished, Step: a.Step, Result: checklists.ResultOK, Detail: "the server's catalog says " + detail})
		a.finish(checklists.Event{Result: checklists.ResultOK, Database: sw.Live, KeptDB: sw.Kept, Bytes: restored.Read, Detail: detail})
	case !started:
		// Refused before anything changed (the journal, a lost lock, an unconfirmed check).
		r.Record(checklists.Event{Type: checklists.EventNote, Who: "drconsole", Note: "swap refused, nothing changed: " + err.Error()})
	case errors.Is(err, recovery.ErrSwapUnknown):
		r.Record(checklists.Event{Type: checklists.EventSwapFinished, Step: a.Step, Result: checklists.ResultUnknown, Error: err.Error()})
	default:
		r.Record(checklists.Event{Type: checklists.EventSwapFinished, Step: a.Step, Result: outcome(err), Error: err.Error(),
			Detail: fmt.Sprintf("%s is unchanged (checked on the server); the restored copy %s is still there", a.Plan.Target, a.Plan.Scratch)})
	}
	return sw, err
}

// Abandon drops the restored copy and records why; the live database is untouched.
func (a *Attempt) Abandon(ctx context.Context, why string) error {
	restored := a.Restored()
	if restored == nil {
		return nil
	}
	err := a.run.Engine.Abandon(ctx, restored)
	if err != nil {
		a.finish(checklists.Event{Result: checklists.ResultAbandoned, Error: err.Error(),
			Detail: fmt.Sprintf("%s; %s is untouched, but the restored copy %s could not be dropped: the next drconsole run lists it for dropping", why, a.Plan.Target, a.Plan.Scratch)})
		return err
	}
	a.finish(checklists.Event{Result: checklists.ResultAbandoned, Detail: fmt.Sprintf("%s; the restored copy %s was dropped and %s is untouched", why, a.Plan.Scratch, a.Plan.Target)})
	return nil
}

// Reconcile finishes, from the server's catalog, the record of every restore attempt that
// a killed or disconnected drconsole left without an outcome in this incident's journal,
// and says what it found. Call it when the journal is opened, before any new attempt.
func (r *Run) Reconcile(ctx context.Context, c *recovery.Conn) ([]string, error) {
	if r.j == nil || c == nil {
		return nil, nil
	}
	var said []string
	for _, rec := range r.j.Incident().Restores {
		if !rec.Unfinished() {
			continue
		}
		line, events, err := reconcile(ctx, c, rec)
		if err != nil {
			return said, err
		}
		if err := r.Record(events...); err != nil {
			return said, err
		}
		said = append(said, line)
	}
	return said, nil
}

// reconcile finds out what became of one unfinished attempt.
func reconcile(ctx context.Context, c *recovery.Conn, rec checklists.RestoreRecord) (string, []checklists.Event, error) {
	fin := checklists.Event{Type: checklists.EventRestoreFinished, Step: rec.Step, Backup: rec.Backup, Database: rec.Database}
	var events []checklists.Event
	if sw := rec.Swap; sw != nil && sw.ScratchOID != 0 && sw.Result != checklists.ResultFailed {
		in := recovery.SwapIntent{Mode: recovery.Mode(rec.Mode), Target: rec.Database, Scratch: rec.ScratchDB, Kept: rec.KeptDB, TargetOID: sw.TargetOID, ScratchOID: sw.ScratchOID}
		state, err := recovery.SwapStateOf(c, in)
		switch state {
		case recovery.SwapDone:
			detail := fmt.Sprintf("%s is the restored copy", rec.Database)
			if rec.KeptDB != "" {
				detail += "; the previous database is kept as " + rec.KeptDB
			}
			events = append(events,
				checklists.Event{Type: checklists.EventSwapFinished, Step: rec.Step, Result: checklists.ResultOK, Detail: "found on the server after drconsole was interrupted: " + detail},
			)
			fin.Result, fin.KeptDB, fin.Detail = checklists.ResultOK, rec.KeptDB, detail+" (the swap committed; drconsole was interrupted before recording it)"
			return "the interrupted swap of " + rec.Database + " had happened: " + detail, append(events, fin), nil
		case recovery.SwapNotDone:
			events = append(events, checklists.Event{Type: checklists.EventSwapFinished, Step: rec.Step, Result: checklists.ResultFailed,
				Detail: fmt.Sprintf("interrupted before it committed: %s is unchanged (checked on the server)", rec.Database)})
		default:
			return "", nil, fmt.Errorf("the swap of %s was interrupted and the server cannot tell yet whether it happened: %v", rec.Database, err)
		}
	}
	fin.Result = checklists.ResultInterrupted
	fin.Detail = fmt.Sprintf("the drconsole running this restore ended before it finished; %s is untouched", rec.Database)
	if rec.ScratchDB != "" && rec.Mode != string(recovery.ModeTest) {
		exists, err := recovery.Exists(ctx, c, rec.ScratchDB)
		switch {
		case err != nil:
			return "", nil, err
		case exists:
			fin.Detail += fmt.Sprintf("; its scratch copy %s is still on the server (drconsole check --drop-leftovers drops it)", rec.ScratchDB)
		default:
			fin.Detail += fmt.Sprintf("; its scratch copy %s is gone", rec.ScratchDB)
		}
	}
	return "an interrupted restore of " + rec.Database + ": " + fin.Detail, append(events, fin), nil
}
