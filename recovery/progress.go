package recovery

import (
	"sync"
	"time"
)

// Stage is a phase of a restore, verify or backup, in the order they happen.
type Stage string

const (
	StagePreflight Stage = "preflight" // reading the header, checking the server and roles
	StageCreate    Stage = "create"    // creating the scratch database
	StageStream    Stage = "stream"    // streaming the backup into pg_restore/psql (or, for verify, to nowhere)
	StageChecks    Stage = "checks"    // integrity checks in the scratch database
	StageSwap      Stage = "swap"      // renaming: live → kept, scratch → live
	StageCleanup   Stage = "cleanup"   // dropping the scratch database after a failure or cancel
	StageDump      Stage = "dump"      // drconsole backup: pg_dump → gzip → encrypt → location
	StageDone      Stage = "done"
)

// Event is one progress report. Most are periodic figures and may be dropped by a slow
// consumer; an Event with Final set is always delivered, exactly once per run.
type Event struct {
	Time  time.Time
	Stage Stage

	Read         int64         // bytes read from the location so far
	Size         int64         // the backup's stored size; 0 when unknown
	Decompressed int64         // bytes of dump produced by decryption and decompression
	Rate         float64       // bytes read per second, smoothed
	ETA          time.Duration // time left at the current rate; -1 when unknown
	TablesDone   int           // tables whose data pg_restore has loaded
	TablesTotal  int           // tables with data in the archive; 0 for plain SQL
	Table        string        // the table being loaded now
	// The parallel engine's figures: its phase (pre-data, load, post-data), rows of Table
	// loaded so far, and indexes and constraints built of those in the archive.
	Phase                     string
	Rows                      int64
	IndexesDone, IndexesTotal int

	// Message is a line for the log: a stage change, a pg_restore line, a warning.
	Message string
	// Tool: Message is a line the restore tool (pg_restore) printed, not drconsole's own.
	Tool bool

	// Final marks the last event: Err is nil when the run succeeded; errors.Is(Err,
	// ErrCancelled) when it was cancelled; otherwise it failed.
	Final bool
	Err   error
}

// Reporter receives progress. Report must not block for long: the stream waits for it.
type Reporter interface {
	Report(Event)
}

// ReporterFunc adapts a function to a Reporter.
type ReporterFunc func(Event)

func (f ReporterFunc) Report(e Event) { f(e) }

// Discard is a Reporter that ignores everything.
var Discard Reporter = ReporterFunc(func(Event) {})

// Throttle passes on at most one figures-only event per interval; events with a
// Message, a stage change or Final always pass. A zero interval passes everything (tests).
func Throttle(r Reporter, interval time.Duration) Reporter {
	if r == nil {
		return Discard
	}
	if interval <= 0 {
		return r
	}
	return &throttled{next: r, every: interval}
}

type throttled struct {
	mu    sync.Mutex
	next  Reporter
	every time.Duration
	last  time.Time
	stage Stage
}

func (t *throttled) Report(e Event) {
	t.mu.Lock()
	always := e.Final || e.Message != "" || e.Stage != t.stage
	// Only figures-only events count against the interval: a chatty pg_restore must not
	// starve the byte counts.
	pass := always || e.Time.Sub(t.last) >= t.every
	if pass && e.Message == "" {
		t.last = e.Time
	}
	t.stage = e.Stage
	t.mu.Unlock()
	if pass {
		t.next.Report(e)
	}
}

// MergeFigures is what is known of a run after e, given what was known before (last):
// events carry only some figures — a pg_restore line tables but no bytes, a sample bytes
// and tables but no phase, the parallel engine a table's rows — and none may wipe the
// others'. A presenter keeps the result and shows it.
func MergeFigures(last, e Event) Event {
	out := last
	out.Message, out.Tool, out.Final, out.Err = "", false, e.Final, e.Err
	if !e.Time.IsZero() {
		out.Time = e.Time
	}
	if e.Stage != "" {
		out.Stage = e.Stage
	}
	if e.Read > 0 || e.Final {
		out.Read, out.Rate, out.ETA = e.Read, e.Rate, e.ETA
		if e.Size > 0 {
			out.Size = e.Size
		}
		if e.Decompressed > 0 {
			out.Decompressed = e.Decompressed
		}
	}
	if e.TablesTotal > 0 {
		out.TablesDone, out.TablesTotal = e.TablesDone, e.TablesTotal
	}
	if e.Phase != "" {
		out.Phase = e.Phase
	}
	if e.Table != "" && e.Table != out.Table {
		out.Table, out.Rows = e.Table, 0 // another table: its rows are not known yet
	}
	if e.Rows > 0 && (e.Table == "" || e.Table == out.Table) {
		out.Rows = e.Rows
	}
	if e.IndexesTotal > 0 {
		out.IndexesDone, out.IndexesTotal = e.IndexesDone, e.IndexesTotal
	}
	return out
}
