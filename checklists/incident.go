package checklists

import (
	"fmt"
	"time"
)

// Incident is a journal read back: what was planned and what happened, in order.
type Incident struct {
	ID           string
	Path         string
	Scenario     string
	ScenarioName string
	Drill        bool
	Operator     string
	Host         string
	Plan         Plan
	Started      time.Time
	Ended        time.Time // zero while the incident is open
	Closed       bool
	Outcome      string

	Steps    []StepRecord // one per planned step, in the plan's order
	Commands []CommandRecord
	Backup   *BackupRecord
	Restores []RestoreRecord
	Checks   []CheckRecord
	Ticks    []TickRecord
	Notes    []NoteRecord
	Sessions []NoteRecord
	// Notifications are the messages sent, one per channel, in the order they were sent.
	Notifications []NotificationRecord
	Escalations   []EscalationRecord
	// Injects are a drill's injects that fell due, in order.
	Injects []InjectRecord
	// PITR is the last point-in-time recovery (pitr_recovered), or nil.
	PITR      *PITRRecord
	Events    []Event
	LastEvent time.Time
}

// StepStatus is where a step stands.
type StepStatus string

const (
	StepPending StepStatus = "pending"
	StepRunning StepStatus = "running"
	StepPaused  StepStatus = "paused"
	StepDone    StepStatus = "done"
	StepSkipped StepStatus = "skipped"
)

// StepRecord is a planned step and what happened to it. Paused is the time spent
// paused before PausedAt (the current pause, if any, is not in it).
type StepRecord struct {
	Number   int
	Title    string
	Kind     StepKind
	Budget   time.Duration
	Status   StepStatus
	Started  time.Time
	Ended    time.Time
	Paused   time.Duration
	PausedAt time.Time
	Note     string
}

// CommandRecord is a command shown, run, or (in a drill) recorded as what would have run.
type CommandRecord struct {
	Time            time.Time
	Step            int
	Command         string
	Ran             bool // false: only shown
	DryRun          bool
	ExitCode        *int
	Output          string
	OutputTruncated bool
	Duration        time.Duration
	Error           string
}

// BackupRecord is the backup chosen for the restore.
type BackupRecord struct {
	ChosenAt time.Time
	Name     string
	Location string
	Taken    *time.Time
	Size     int64
}

// RestoreRecord is one restore attempt, from restore_started to its outcome.
type RestoreRecord struct {
	Step       int
	Started    time.Time
	Ended      time.Time
	Backup     string
	Mode       string
	Database   string
	ScratchDB  string
	KeptDB     string
	Milestones []NoteRecord
	Loaded     string // the load and checks: ok, failed, cancelled; "" while running
	Swap       *SwapRecord
	Result     string // the outcome (restore_finished); "" until there is one
	Error      string
	Detail     string
	Bytes      int64
	Duration   time.Duration
	Rows       []TableRows // each table's rows, as the checks counted them; nil when not counted
}

// SwapRecord is a swap of a restored copy: what was about to happen, and what the
// server's catalog said had happened.
type SwapRecord struct {
	Started    time.Time
	Ended      time.Time
	TargetOID  uint32
	ScratchOID uint32
	Result     string // ok, failed, unknown; "" while it runs (or if it was cut off)
	Error      string
	Detail     string
}

// Restore states beyond the results: what an attempt without an outcome is doing.
const (
	StateRunning  = "running"  // loading or checking
	StateLoaded   = "loaded"   // restored and checked; waiting for the swap or abandon
	StateSwapping = "swapping" // the swap started and its end is not recorded
)

// State is where the attempt stands: its outcome (ok, failed, cancelled, abandoned,
// interrupted), else unknown (a swap cut off), swapping, loaded or running.
func (r RestoreRecord) State() string {
	switch {
	case r.Result != "":
		return r.Result
	case r.Swap != nil && r.Swap.Result == ResultUnknown:
		return ResultUnknown
	case r.Swap != nil && r.Swap.Result == "":
		return StateSwapping
	case r.Loaded == ResultOK:
		return StateLoaded
	}
	return StateRunning
}

// Unfinished reports whether the attempt has no outcome yet.
func (r RestoreRecord) Unfinished() bool { return r.Result == "" }

// PITRRecord is a point-in-time recovery: what it aimed at and reached, and into what.
type PITRRecord struct {
	PITRPoint
	Time     time.Time
	Step     int
	Database string // the database brought back through a restore ("" for a data directory)
	PgData   string // the data directory recovered into, when it is kept
	Result   string
	Error    string
	Duration time.Duration
}

// CheckRecord is one integrity or health check's result.
type CheckRecord struct {
	Time   time.Time
	Step   int
	Name   string
	Result string
	Detail string
}

// TickRecord is a checklist item ticked: who and when.
type TickRecord struct {
	Time time.Time
	Step int // 0: the post-recovery checklist
	Item string
	Who  string
}

// NotificationRecord is one message to one channel: what was sent, to whom, when, and
// what became of it. Result is "" while no result is recorded (sending, or drconsole ended
// before it knew).
type NotificationRecord struct {
	Ref      string
	Time     time.Time
	Step     int
	Channel  string
	Kind     string
	Action   string
	Subject  string
	Text     string
	Who      string
	Result   string // delivered, failed, ""
	Error    string
	Attempts int
	Ended    time.Time
	Duration time.Duration
}

// EscalationRecord is an escalation level that fell due and what the operator did.
type EscalationRecord struct {
	Time   time.Time
	Level  int
	Role   string
	Result string // paged, mailed, declined
	Who    string
}

// InjectRecord is a drill's inject that fell due: what the team was shown, what was
// applied to the sandbox, and when they acknowledged it (zero: not yet).
type InjectRecord struct {
	Ref     string
	Time    time.Time
	Step    int // the step it was due on; 0: due at a time
	Event   string
	Detail  string
	Apply   string // primary-unreachable, newest-backup-corrupt, escalate or ""
	Level   int    // escalate: the level due
	Result  string // applied, failed, shown
	Error   string
	Applied string // what was done
	Acked   time.Time
	AckedBy string
}

// NoteRecord is a timestamped line of text.
type NoteRecord struct {
	Time time.Time
	Who  string
	Text string
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// apply folds one event into the incident. Events that do not fit (a step number out
// of range) are kept in Events but change nothing else.
func (inc *Incident) apply(e Event) {
	inc.Events = append(inc.Events, e)
	inc.LastEvent = e.Time
	step := func() *StepRecord {
		if e.Step < 1 || e.Step > len(inc.Steps) {
			return nil
		}
		return &inc.Steps[e.Step-1]
	}
	switch e.Type {
	case EventIncidentStarted:
		inc.Scenario, inc.ScenarioName, inc.Drill = e.Scenario, e.ScenarioName, e.Drill
		inc.Operator, inc.Host, inc.Started = e.Operator, e.Host, e.Time
		if e.Plan != nil {
			inc.Plan = *e.Plan
			inc.Steps = make([]StepRecord, len(e.Plan.Steps))
			for i, ps := range e.Plan.Steps {
				inc.Steps[i] = StepRecord{Number: i + 1, Title: ps.Title, Kind: ps.Kind, Budget: fromMinutes(ps.BudgetMinutes), Status: StepPending}
			}
		}
	case EventStepStarted:
		if s := step(); s != nil {
			if s.Started.IsZero() {
				s.Started = e.Time
			}
			if s.Status == StepPaused { // started again: treat as resumed
				s.Paused += e.Time.Sub(s.PausedAt)
				s.PausedAt = time.Time{}
			}
			s.Status, s.Ended = StepRunning, time.Time{}
		}
	case EventStepPaused:
		if s := step(); s != nil && s.Status == StepRunning {
			s.Status, s.PausedAt = StepPaused, e.Time
		}
	case EventStepResumed:
		if s := step(); s != nil && s.Status == StepPaused {
			s.Paused += e.Time.Sub(s.PausedAt)
			s.Status, s.PausedAt = StepRunning, time.Time{}
		}
	case EventStepDone, EventStepSkipped:
		if s := step(); s != nil {
			if s.Status == StepPaused {
				s.Paused += e.Time.Sub(s.PausedAt)
				s.PausedAt = time.Time{}
			}
			s.Status, s.Ended, s.Note = StepDone, e.Time, e.Note
			if e.Type == EventStepSkipped {
				s.Status = StepSkipped
			}
		}
	case EventCommandShown:
		inc.Commands = append(inc.Commands, CommandRecord{Time: e.Time, Step: e.Step, Command: e.Command})
	case EventCommandRun:
		rec := CommandRecord{Time: e.Time, Step: e.Step, Command: e.Command, Ran: !e.DryRun, DryRun: e.DryRun,
			ExitCode: e.ExitCode, Output: e.Output, OutputTruncated: e.OutputTruncated, Duration: seconds(e.Seconds), Error: e.Error}
		// Shown, then run: one command, not two. The record keeps when it was shown.
		if n := len(inc.Commands); n > 0 {
			if last := &inc.Commands[n-1]; last.Step == e.Step && last.Command == e.Command && !last.Ran && !last.DryRun && last.ExitCode == nil {
				rec.Time = last.Time
				*last = rec
				break
			}
		}
		inc.Commands = append(inc.Commands, rec)
	case EventBackupChosen:
		inc.Backup = &BackupRecord{ChosenAt: e.Time, Name: e.Backup, Location: e.Location, Taken: e.BackupTime, Size: e.Bytes}
	case EventRestoreStarted:
		inc.Restores = append(inc.Restores, RestoreRecord{Step: e.Step, Started: e.Time, Backup: e.Backup, Mode: e.Mode, Database: e.Database, ScratchDB: e.ScratchDB, KeptDB: e.KeptDB})
	case EventRestoreProgress:
		if r := inc.lastRestore(e.Time); r != nil {
			r.Milestones = append(r.Milestones, NoteRecord{Time: e.Time, Text: e.Milestone})
		}
	case EventRestoreLoaded:
		if r := inc.lastRestore(e.Time); r != nil {
			r.Loaded, r.Error, r.Bytes = e.Result, e.Error, e.Bytes
			r.Duration = seconds(e.Seconds)
		}
	case EventSwapStarted:
		if r := inc.lastRestore(e.Time); r != nil {
			r.Swap = &SwapRecord{Started: e.Time, TargetOID: e.TargetOID, ScratchOID: e.ScratchOID}
			if e.KeptDB != "" {
				r.KeptDB = e.KeptDB
			}
		}
	case EventSwapFinished:
		if r := inc.lastRestore(e.Time); r != nil {
			if r.Swap == nil {
				r.Swap = &SwapRecord{Started: e.Time}
			}
			r.Swap.Ended, r.Swap.Result, r.Swap.Error, r.Swap.Detail = e.Time, e.Result, e.Error, e.Detail
		}
	case EventRestoreFinished:
		if r := inc.lastRestore(e.Time); r != nil {
			r.Ended, r.Result, r.Detail = e.Time, e.Result, e.Detail
			if e.Error != "" || e.Result != ResultOK {
				r.Error = e.Error
			}
			if e.Bytes > 0 {
				r.Bytes = e.Bytes
			}
			if e.Seconds > 0 {
				r.Duration = seconds(e.Seconds)
			}
			if r.Duration == 0 {
				r.Duration = e.Time.Sub(r.Started)
			}
			if e.Backup != "" {
				r.Backup = e.Backup
			}
			if e.Database != "" {
				r.Database = e.Database
			}
			if e.ScratchDB != "" {
				r.ScratchDB = e.ScratchDB
			}
			if e.KeptDB != "" {
				r.KeptDB = e.KeptDB
			}
		}
	case EventRowsCounted:
		if r := inc.lastRestore(e.Time); r != nil {
			r.Rows = e.Tables
		}
	case EventCheckResult:
		inc.Checks = append(inc.Checks, CheckRecord{Time: e.Time, Step: e.Step, Name: e.Title, Result: e.Result, Detail: e.Detail})
	case EventChecklistTicked:
		inc.Ticks = append(inc.Ticks, TickRecord{Time: e.Time, Step: e.Step, Item: e.Title, Who: e.Who})
	case EventNote:
		inc.Notes = append(inc.Notes, NoteRecord{Time: e.Time, Who: e.Who, Text: e.Note})
	case EventSession:
		inc.Sessions = append(inc.Sessions, NoteRecord{Time: e.Time, Who: e.Who, Text: e.Note})
	case EventNotifySent:
		inc.Notifications = append(inc.Notifications, NotificationRecord{Ref: e.Ref, Time: e.Time, Step: e.Step, Channel: e.Channel,
			Kind: e.Kind, Action: e.Action, Subject: e.Title, Text: e.Note, Who: e.Who})
	case EventNotifyResult:
		for i := len(inc.Notifications) - 1; i >= 0; i-- {
			if n := &inc.Notifications[i]; n.Ref == e.Ref && n.Channel == e.Channel {
				n.Result, n.Error, n.Attempts, n.Ended, n.Duration = e.Result, e.Error, e.Attempts, e.Time, seconds(e.Seconds)
				break
			}
		}
	case EventEscalationAck:
		inc.Escalations = append(inc.Escalations, EscalationRecord{Time: e.Time, Level: e.Level, Role: e.Title, Result: e.Result, Who: e.Who})
	case EventInject:
		inc.Injects = append(inc.Injects, InjectRecord{Ref: e.Ref, Time: e.Time, Step: e.Step, Event: e.Title, Detail: e.Note,
			Apply: e.Kind, Level: e.Level, Result: e.Result, Error: e.Error, Applied: e.Detail})
	case EventInjectAck:
		for i := range inc.Injects {
			if in := &inc.Injects[i]; in.Ref == e.Ref && in.Acked.IsZero() {
				in.Acked, in.AckedBy = e.Time, e.Who
			}
		}
	case EventPITRRecovered:
		rec := &PITRRecord{Time: e.Time, Step: e.Step, Database: e.Database, Result: e.Result, Error: e.Error, Duration: seconds(e.Seconds)}
		if e.Database == "" {
			rec.PgData = e.Detail
		}
		if e.PITR != nil {
			rec.PITRPoint = *e.PITR
		}
		inc.PITR = rec
	case EventIncidentClosed:
		inc.Closed, inc.Ended, inc.Outcome = true, e.Time, e.Result
		for i := range inc.Steps {
			if s := &inc.Steps[i]; s.Status == StepPaused {
				s.Paused += e.Time.Sub(s.PausedAt)
				s.PausedAt = time.Time{}
			}
		}
	}
}

// lastRestore is the restore that events refer to: the last one started. An event with
// no restore before it (a damaged journal) opens one, so that it is not lost.
func (inc *Incident) lastRestore(t time.Time) *RestoreRecord {
	if n := len(inc.Restores); n > 0 {
		return &inc.Restores[n-1]
	}
	inc.Restores = append(inc.Restores, RestoreRecord{Started: t})
	return &inc.Restores[len(inc.Restores)-1]
}

// Restore is the restore the incident's outcome rests on: the last one started (a later
// attempt supersedes an earlier one, whatever became of either), or nil.
func (inc *Incident) Restore() *RestoreRecord {
	if n := len(inc.Restores); n > 0 {
		return &inc.Restores[n-1]
	}
	return nil
}

// LatestChecks is each check's latest result, in the order the checks first ran: a check
// run again (a health check after a failure, the checks of a later restore) supersedes
// its earlier results.
func (inc *Incident) LatestChecks() []CheckRecord {
	at := map[string]int{}
	var out []CheckRecord
	for _, c := range inc.Checks {
		if i, ok := at[c.Name]; ok {
			out[i] = c
			continue
		}
		at[c.Name] = len(out)
		out = append(out, c)
	}
	return out
}

// Ticked returns the tick of a post-recovery checklist item, if it was ticked.
func (inc *Incident) Ticked(item string) (TickRecord, bool) {
	for _, t := range inc.Ticks {
		if t.Step == 0 && t.Item == item {
			return t, true
		}
	}
	return TickRecord{}, false
}

// Acknowledged reports whether the operator answered escalation level n (paged, mailed or
// declined it), so that the console does not offer it again.
func (inc *Incident) Acknowledged(level int) bool {
	for _, e := range inc.Escalations {
		if e.Level == level {
			return true
		}
	}
	return false
}

// String names the incident for lists and messages.
func (inc *Incident) String() string {
	kind := "incident"
	if inc.Drill {
		kind = "drill"
	}
	return fmt.Sprintf("%s %s (%s)", kind, inc.ID, inc.ScenarioName)
}

func (inc *Incident) clone() *Incident {
	c := *inc
	c.Steps = append([]StepRecord(nil), inc.Steps...)
	c.Commands = append([]CommandRecord(nil), inc.Commands...)
	c.Restores = append([]RestoreRecord(nil), inc.Restores...)
	for i := range c.Restores {
		c.Restores[i].Milestones = append([]NoteRecord(nil), c.Restores[i].Milestones...)
		c.Restores[i].Rows = append([]TableRows(nil), c.Restores[i].Rows...)
		if sw := c.Restores[i].Swap; sw != nil {
			cp := *sw
			c.Restores[i].Swap = &cp
		}
	}
	c.Checks = append([]CheckRecord(nil), inc.Checks...)
	c.Ticks = append([]TickRecord(nil), inc.Ticks...)
	c.Notes = append([]NoteRecord(nil), inc.Notes...)
	c.Sessions = append([]NoteRecord(nil), inc.Sessions...)
	c.Notifications = append([]NotificationRecord(nil), inc.Notifications...)
	c.Escalations = append([]EscalationRecord(nil), inc.Escalations...)
	c.Injects = append([]InjectRecord(nil), inc.Injects...)
	c.Events = append([]Event(nil), inc.Events...)
	c.Plan.Steps = append([]PlanStep(nil), inc.Plan.Steps...)
	c.Plan.Checklist = append([]string(nil), inc.Plan.Checklist...)
	if inc.Backup != nil {
		b := *inc.Backup
		c.Backup = &b
	}
	if inc.PITR != nil {
		p := *inc.PITR
		c.PITR = &p
	}
	return &c
}
