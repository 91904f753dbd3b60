package incident

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"drconsole/checklists"
	"drconsole/recovery"
	"drconsole/wal"
)

// A point-in-time recovery is journaled as one pitr_recovered event once the server has
// said where it stopped (or why it did not): the target, the base backup, the WAL range,
// the timelines and the recovery point, from which the report's RPO follows. The command
// line and the console both recover through the two functions below.

// RecoverDataDir recovers the cluster into the plan's data directory (a fresh DR host)
// and leaves the server running there.
func (r *Run) RecoverDataDir(ctx context.Context, plan *wal.PITRPlan, step int) (*wal.PITRResult, error) {
	start := time.Now()
	res, err := plan.Restore(ctx)
	var at time.Time
	if res != nil {
		at = res.Point()
	}
	r.Record(pitrEvent(plan, res, err, step, at, start, "", plan.PgData()))
	return res, err
}

// PITRDump is a database recovered to a point in time and dumped, ready to go through the
// ordinary safe restore as a custom-format backup.
type PITRDump struct {
	File   string    // <database>_full_<recovery point>.dump
	Point  time.Time // the recovery point (the dump's name says it too)
	Result *wal.PITRResult
	work   string
}

// Remove removes the dump and the temporary directory it is in.
func (d *PITRDump) Remove() error {
	if d == nil || d.work == "" {
		return nil
	}
	return os.RemoveAll(d.work)
}

// RecoverDatabase recovers the cluster into a private temporary data directory under
// workDir ("" for $TMPDIR), dumps database from it as role, and stops and removes the
// temporary cluster, leaving only the dump (Remove removes it). A temporary cluster that
// a killed run left goes first; log is told what happens, in words.
func (r *Run) RecoverDatabase(ctx context.Context, plan *wal.PITRPlan, step int, workDir, database, role string, log func(string)) (*PITRDump, error) {
	say := func(format string, args ...any) {
		if log != nil {
			log(fmt.Sprintf(format, args...))
		}
	}
	if removed, err := wal.RemoveOrphans(workDir, "drconsole-pitr-*", "pgdata"); err != nil {
		say("a temporary cluster left by a run that died could not be removed: %v", err)
	} else {
		for _, d := range removed {
			say("removed %s, the temporary cluster of a run that died", d)
		}
	}
	work, err := os.MkdirTemp(workDir, "drconsole-pitr-")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", recovery.ErrPreflight, err)
	}
	d := &PITRDump{work: work}
	fail := func(err error) (*PITRDump, error) {
		d.Remove()
		return nil, err
	}
	if err := wal.MarkOwner(work); err != nil {
		return fail(err)
	}
	port, err := wal.FreePort()
	if err != nil {
		return fail(err)
	}
	plan.SetPgData(filepath.Join(work, "pgdata"), port, true)
	start := time.Now()
	res, err := plan.Restore(ctx)
	// The server is stopped before its directory goes, however it ends.
	stop := func() {
		if res != nil {
			res.Stop()
		}
	}
	if err != nil {
		r.Record(pitrEvent(plan, res, err, step, time.Time{}, start, database, ""))
		stop()
		return fail(err)
	}
	say("recovered: %s; promoted to timeline %d", res.Stopped, res.NewTimeline)
	// The last transaction the recovery replayed dates the data (the server knows it
	// best), else its log; the dump's name and the report's RPO follow.
	at := res.RecoveryPoint(ctx, role)
	if at.IsZero() {
		at = res.Point()
	}
	r.Record(pitrEvent(plan, res, nil, step, at, start, database, ""))
	name := at
	if name.IsZero() {
		name = plan.Target()
	}
	if name.IsZero() {
		name = time.Now()
	}
	d.File, d.Point, d.Result = filepath.Join(work, fmt.Sprintf("%s_full_%s.dump", database, name.UTC().Format("20060102_150405"))), at, res
	say("dumping %s from the recovered cluster", database)
	if err := res.Dump(ctx, database, role, d.File); err != nil {
		stop()
		return fail(err)
	}
	if err := res.Stop(); err != nil {
		say("%v", err)
	}
	return d, nil
}

// pitrEvent is the journal's record of a recovery: what the plan aimed at and what the
// server said it reached.
func pitrEvent(plan *wal.PITRPlan, res *wal.PITRResult, err error, step int, at, start time.Time, database, pgdata string) checklists.Event {
	b := plan.Base
	pt := &checklists.PITRPoint{BaseBackup: b.Name, BaseLocation: b.Location, FirstSegment: b.StartWAL, LastSegment: plan.Newest,
		Segments: plan.Segments, Timeline: plan.Timeline}
	if !b.StopTime.IsZero() {
		t := b.StopTime.UTC()
		pt.BaseConsistent = &t
	}
	switch {
	case plan.LSN() != "":
		pt.TargetKind, pt.TargetLSN = "lsn", plan.LSN()
	case plan.Latest():
		pt.TargetKind = "latest"
	default:
		t := plan.Target().UTC()
		pt.TargetKind, pt.TargetTime = "time", &t
	}
	if res != nil {
		pt.Stopped, pt.NewTimeline = res.Stopped, res.NewTimeline
		if res.LastSegment != "" {
			pt.LastSegment, pt.Segments = res.LastSegment, res.Replayed
		}
	}
	if !at.IsZero() {
		t := at.UTC()
		pt.RecoveryPoint = &t
	}
	e := checklists.Event{Type: checklists.EventPITRRecovered, Step: step, PITR: pt, Database: database, Result: checklists.ResultOK, Seconds: since(start)}
	if database == "" {
		e.Detail = pgdata
	}
	if err != nil {
		e.Result, e.Error = outcome(err), err.Error()
	}
	return e
}
