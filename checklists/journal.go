package checklists

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// EventType says what happened. The journal is JSON lines, one Event a line.
type EventType string

const (
	EventIncidentStarted EventType = "incident_started" // Scenario, ScenarioName, Drill, Operator, Host, Plan
	EventStepStarted     EventType = "step_started"     // Step, Title
	EventStepPaused      EventType = "step_paused"      // Step, Note (why)
	EventStepResumed     EventType = "step_resumed"     // Step
	EventStepDone        EventType = "step_done"        // Step, Note
	EventStepSkipped     EventType = "step_skipped"     // Step, Note (why)
	EventCommandShown    EventType = "command_shown"    // Step, Command
	EventCommandRun      EventType = "command_run"      // Step, Command, ExitCode, Output, DryRun, Seconds, Error
	EventBackupChosen    EventType = "backup_chosen"    // Backup, Location, BackupTime, Bytes (its size)
	EventRestoreStarted  EventType = "restore_started"  // Step, Backup, Database (the target), ScratchDB, KeptDB (planned), Mode
	EventRestoreProgress EventType = "restore_progress" // Milestone (stage changes, not every figure)
	EventRestoreLoaded   EventType = "restore_loaded"   // Result (ok: loaded and checked, waiting for its swap), Error, Bytes, Seconds
	EventSwapStarted     EventType = "swap_started"     // Database, ScratchDB, KeptDB, TargetOID, ScratchOID: written before the swap, or no swap
	EventSwapFinished    EventType = "swap_finished"    // Result (ok, failed, unknown), Error, Detail: what the server's catalog says
	EventRestoreFinished EventType = "restore_finished" // Result: the restore's outcome (see RestoreRecord.State), Error, Detail, Bytes, Seconds, Database, KeptDB
	EventCheckResult     EventType = "check_result"     // Title (the check), Result (pass, fail), Detail
	EventRowsCounted     EventType = "rows_counted"     // Step, Tables: each table's rows in the archive, the restored copy and live
	EventChecklistTicked EventType = "checklist_ticked" // Title (the item), Who; Step when it is a step's item
	EventNote            EventType = "note"             // Note, Who
	EventSession         EventType = "session"          // Note: "hung up", "resumed", "attached"
	EventIncidentClosed  EventType = "incident_closed"  // Result (recovered, abandoned, drill-complete), Note
	EventNotifySent      EventType = "notify_sent"      // Ref, Channel, Kind, Action, Title (the subject), Note (the text), Step, Who: written before it is sent
	EventNotifyResult    EventType = "notify_result"    // Ref, Channel, Result (delivered, failed), Error, Attempts, Seconds
	EventEscalationAck   EventType = "escalation_ack"   // Level, Title (the role), Result (paged, mailed, declined), Who
	// A drill's inject fell due: Ref (inject-N, N its place in the inject file), Title (the
	// event shown), Note (its detail), Step (the step whose start it was due on; 0: due at a
	// time), Kind (what it applies: primary-unreachable, newest-backup-corrupt, escalate, or
	// ""), Level (escalate: the escalation level due), Result (applied, failed, or shown:
	// nothing applied, as in a tabletop), Error, Detail (what was done to the sandbox).
	EventInject        EventType = "inject"
	EventInjectAck     EventType = "inject_ack"     // Ref, Who: the team acknowledged the inject on the screen
	EventPITRRecovered EventType = "pitr_recovered" // Step, PITR (target, base backup, WAL range, timelines, recovery point), Database (a database brought back through a restore) or Detail (the data directory), Result (ok, failed, cancelled), Error, Seconds
)

// Results of a restore, a swap, a check and an incident. A restore's result is ok only
// when the restored copy is live (swapped in or created) or, for a test restore, made.
const (
	ResultApplied     = "applied" // an inject done for real in a sandbox
	ResultShown       = "shown"   // an inject shown, nothing applied
	ResultOK          = "ok"
	ResultFailed      = "failed"
	ResultCancelled   = "cancelled"
	ResultAbandoned   = "abandoned"   // the restored copy was dropped without a swap
	ResultInterrupted = "interrupted" // the drconsole running it ended before it finished
	ResultUnknown     = "unknown"     // a swap was cut off and the server could not be asked
	ResultDelivered   = "delivered"   // a notification reached its channel
	CheckPass         = "pass"
	CheckFail         = "fail"
)

// Event is one line of the journal. Only the fields its Type lists are set.
type Event struct {
	Seq  int       `json:"seq"`
	Time time.Time `json:"time"`
	Type EventType `json:"type"`

	Scenario     string `json:"scenario,omitempty"`
	ScenarioName string `json:"scenario_name,omitempty"`
	Drill        bool   `json:"drill,omitempty"`
	Operator     string `json:"operator,omitempty"`
	Host         string `json:"host,omitempty"`
	Plan         *Plan  `json:"plan,omitempty"`

	Step  int    `json:"step,omitempty"` // 1-based step number
	Title string `json:"title,omitempty"`
	Note  string `json:"note,omitempty"`
	Who   string `json:"who,omitempty"`

	Command         string  `json:"command,omitempty"`
	DryRun          bool    `json:"dry_run,omitempty"`
	ExitCode        *int    `json:"exit_code,omitempty"`
	Output          string  `json:"output,omitempty"`
	OutputTruncated bool    `json:"output_truncated,omitempty"`
	Seconds         float64 `json:"seconds,omitempty"` // how long it took

	Backup     string      `json:"backup,omitempty"`
	Location   string      `json:"location,omitempty"`
	BackupTime *time.Time  `json:"backup_time,omitempty"` // when the backup was taken
	Bytes      int64       `json:"bytes,omitempty"`
	Milestone  string      `json:"milestone,omitempty"`
	Result     string      `json:"result,omitempty"`
	Error      string      `json:"error,omitempty"`
	Detail     string      `json:"detail,omitempty"`
	Database   string      `json:"database,omitempty"`
	ScratchDB  string      `json:"scratch_db,omitempty"`
	KeptDB     string      `json:"kept_db,omitempty"`
	Mode       string      `json:"mode,omitempty"`        // a restore's mode: swap, create or test
	TargetOID  uint32      `json:"target_oid,omitempty"`  // swap_started: the live database's OID before the swap
	ScratchOID uint32      `json:"scratch_oid,omitempty"` // swap_started: the restored copy's OID
	Tables     []TableRows `json:"tables,omitempty"`      // rows_counted

	Ref      string `json:"ref,omitempty"`      // a notification's id, pairing notify_sent with its notify_result
	Channel  string `json:"channel,omitempty"`  // the notify channel's name
	Kind     string `json:"kind,omitempty"`     // a notification's kind: update, escalation, test
	Action   string `json:"action,omitempty"`   // PagerDuty's event action: trigger, acknowledge, resolve
	Attempts int    `json:"attempts,omitempty"` // delivery attempts made
	Level    int    `json:"level,omitempty"`    // an escalation level, 1-based

	PITR *PITRPoint `json:"pitr,omitempty"` // pitr_recovered
}

// PITRPoint is what a point-in-time recovery aimed at and reached: the target (a time,
// a WAL location, or the latest archived commit), the base backup it started from, the
// WAL segments replayed, the timeline followed and the one it promoted to, and the
// recovery point: the moment the recovered data is from.
type PITRPoint struct {
	TargetKind     string     `json:"target_kind"`           // time, lsn, latest
	TargetTime     *time.Time `json:"target_time,omitempty"` // UTC
	TargetLSN      string     `json:"target_lsn,omitempty"`
	BaseBackup     string     `json:"base_backup"`
	BaseLocation   string     `json:"base_location,omitempty"`
	BaseConsistent *time.Time `json:"base_consistent,omitempty"` // the base backup's end: no target before it
	FirstSegment   string     `json:"first_segment,omitempty"`
	LastSegment    string     `json:"last_segment,omitempty"`
	Segments       int        `json:"segments,omitempty"` // segments replayed (or planned, when it failed first)
	Timeline       int        `json:"timeline,omitempty"` // the timeline followed to the target
	NewTimeline    int        `json:"new_timeline,omitempty"`
	Stopped        string     `json:"stopped,omitempty"`        // the server's words: "recovery stopping before commit of transaction …, time …"
	RecoveryPoint  *time.Time `json:"recovery_point,omitempty"` // the last commit replayed, else where recovery stopped
}

// Target says what the recovery aimed at, with an explicit UTC.
func (p PITRPoint) Target() string {
	switch {
	case p.TargetKind == "lsn":
		return "just after WAL location " + p.TargetLSN
	case p.TargetKind == "latest" || p.TargetTime == nil:
		return "the last archived commit"
	}
	return p.TargetTime.UTC().Format("2006-01-02 15:04:05.999999") + " UTC"
}

// TableRows is one table's rows in a restore: in the archive (counted as the stream
// passed), in the restored copy and in the live database, -1 where not known; State is
// how the copy compared with the archive when it was checked: ok, differs, missing
// (the copy has no such table, or it could not be counted) or uncounted.
type TableRows struct {
	Name     string `json:"name"`
	Archive  int64  `json:"archive"`
	Restored int64  `json:"restored"`
	Live     int64  `json:"live"`
	State    string `json:"state"`
}

// RowsOK reports whether the restored copy held the archive's rows (or they could not
// be counted, which the check "rows of every table" warns of on its own).
func (t TableRows) RowsOK() bool { return t.State != "differs" && t.State != "missing" }

// Plan is the scenario as it stood when the incident started, so that a report made later
// does not depend on the runbook file still being the same.
type Plan struct {
	RTOMinutes float64    `json:"rto_minutes"`
	RPOMinutes float64    `json:"rpo_minutes"`
	Steps      []PlanStep `json:"steps"`
	Checklist  []string   `json:"checklist,omitempty"` // the post-recovery checklist
}

// PlanStep is one step of a Plan.
type PlanStep struct {
	Title         string   `json:"title"`
	Kind          StepKind `json:"kind"`
	BudgetMinutes float64  `json:"budget_minutes"`
}

// RTO is the plan's recovery time objective.
func (p Plan) RTO() time.Duration { return fromMinutes(p.RTOMinutes) }

// RPO is the plan's recovery point objective.
func (p Plan) RPO() time.Duration { return fromMinutes(p.RPOMinutes) }

func fromMinutes(m float64) time.Duration { return time.Duration(m * float64(time.Minute)) }

// PlanOf snapshots a scenario and the runbook's post-recovery checklist.
func PlanOf(s *Scenario, checklist []string) *Plan {
	p := &Plan{RTOMinutes: s.RTO.Minutes(), RPOMinutes: s.RPO.Minutes(), Checklist: append([]string(nil), checklist...)}
	for _, st := range s.Steps {
		p.Steps = append(p.Steps, PlanStep{Title: st.Title, Kind: st.Kind, BudgetMinutes: st.Budget.Minutes()})
	}
	return p
}

// Bounds on what one event may carry, so that one chatty command cannot fill the disk
// or make the journal slow to read.
const (
	MaxOutput = 16 << 10 // bytes of command output kept: the end, where errors are
	maxText   = 4 << 10  // bytes of any other text field
)

var (
	ErrNoIncident     = errors.New("no incident")
	ErrNoOpenIncident = errors.New("no open incident")
	ErrIncidentClosed = errors.New("incident is closed")
	ErrJournalBusy    = errors.New("incident is open in another drconsole")
)

// StateDir is where drconsole keeps its state: the --state-dir flag's value when given,
// else $XDG_STATE_HOME/drconsole, else ~/.local/state/drconsole. Journals are in its
// incidents/ folder.
func StateDir(flagValue string, getenv func(string) string) string {
	if flagValue != "" {
		return flagValue
	}
	if x := getenv("XDG_STATE_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "drconsole")
	}
	home := getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	return filepath.Join(home, ".local", "state", "drconsole")
}

// IncidentsDir is the folder of journals under a state directory.
func IncidentsDir(stateDir string) string { return filepath.Join(stateDir, "incidents") }

// Operator is who is at the keyboard: $SUDO_USER (the person behind sudo), else $USER or
// $LOGNAME, else the account the process runs as (cron and containers often set none).
func Operator(getenv func(string) string) string {
	for _, k := range []string{"SUDO_USER", "USER", "LOGNAME"} {
		if v := getenv(k); v != "" {
			return v
		}
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}

// Journal is an open incident's journal. It is safe for use from several goroutines.
type Journal struct {
	// Now is the clock; tests replace it. Set it before the first Record.
	Now func() time.Time

	mu       sync.Mutex
	f        *os.File
	path, id string
	seq      int
	red      redactor
	inc      *Incident
	err      error // a failed write: the file may end in half a line, so stop writing
}

// StartOptions are what Start needs; Runbook gives the post-recovery checklist (the
// embedded default's when nil) and Now the clock (time.Now when nil).
type StartOptions struct {
	StateDir string
	Runbook  *Runbook
	Scenario *Scenario
	Drill    bool
	Operator string
	Host     string
	Now      func() time.Time
}

// Start begins a new incident for a scenario of the default runbook's checklist. See
// StartIncident.
func Start(stateDir string, s *Scenario, drill bool, operator, host string) (*Journal, error) {
	return StartIncident(StartOptions{StateDir: stateDir, Scenario: s, Drill: drill, Operator: operator, Host: host})
}

// StartIncident creates a new journal and records incident_started in it.
func StartIncident(o StartOptions) (*Journal, error) {
	if o.Scenario == nil {
		return nil, errors.New("start incident: no scenario")
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	rb := o.Runbook
	if rb == nil {
		rb = Default()
	}
	dir := IncidentsDir(o.StateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("start incident: %w", err)
	}
	t := now().UTC()
	base := t.Format("20060102-150405") + "-" + o.Scenario.ID
	if o.Drill {
		base += "-drill"
	}
	var f *os.File
	id := base
	for n := 2; ; n++ {
		var err error
		f, err = os.OpenFile(filepath.Join(dir, id+".jsonl"), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || n > 1000 {
			return nil, fmt.Errorf("start incident: %w", err)
		}
		id = fmt.Sprintf("%s-%d", base, n)
	}
	if err := lock(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start incident %s: %w", id, err)
	}
	syncDir(dir) // the new file's name must survive a crash too
	j := &Journal{Now: now, f: f, path: f.Name(), id: id, inc: &Incident{ID: id, Path: f.Name()}}
	err := j.Record(Event{
		Type: EventIncidentStarted, Time: t, Scenario: o.Scenario.ID, ScenarioName: o.Scenario.Name,
		Drill: o.Drill, Operator: o.Operator, Host: o.Host, Plan: PlanOf(o.Scenario, rb.PostRecovery),
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	return j, nil
}

// Resume opens an open incident's journal to add to it. id is the incident's id, a
// unique prefix of it, or a journal's path.
func Resume(stateDir, id string) (*Journal, error) {
	path, err := FindIncident(stateDir, id)
	if err != nil {
		return nil, err
	}
	return resumePath(path)
}

// OpenLatest resumes the most recently started incident that is still open.
func OpenLatest(stateDir string) (*Journal, error) {
	return openLatest(stateDir, func(IncidentSummary) bool { return true })
}

// OpenLatestOfKind resumes the most recently started open incident that is a drill, or
// that is not: a real restore never joins a drill, nor a drill a real incident.
func OpenLatestOfKind(stateDir string, drill bool) (*Journal, error) {
	return openLatest(stateDir, func(s IncidentSummary) bool { return s.Drill == drill })
}

func openLatest(stateDir string, keep func(IncidentSummary) bool) (*Journal, error) {
	list, err := List(stateDir)
	if err != nil {
		return nil, err
	}
	var latest *IncidentSummary
	for i := range list {
		s := &list[i]
		if !s.Closed && s.Err == "" && keep(*s) && (latest == nil || s.Started.After(latest.Started)) {
			latest = s
		}
	}
	if latest == nil {
		return nil, fmt.Errorf("%w in %s", ErrNoOpenIncident, IncidentsDir(stateDir))
	}
	return resumePath(latest.Path)
}

func resumePath(path string) (*Journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("open incident: %w", err)
	}
	id := strings.TrimSuffix(filepath.Base(path), ".jsonl")
	if err := lock(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("open incident %s: %w", id, err)
	}
	inc, warnings, err := readJournal(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	if inc.Closed {
		f.Close()
		return nil, fmt.Errorf("open incident %s: %w (start a new one)", id, ErrIncidentClosed)
	}
	j := &Journal{Now: time.Now, f: f, path: path, id: id, inc: inc}
	for _, e := range inc.Events {
		j.seq = max(j.seq, e.Seq)
	}
	// A torn last line: end it, so that the next event starts on a line of its own.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			if _, err := f.Write([]byte("\n")); err != nil {
				f.Close()
				return nil, fmt.Errorf("open incident %s: %w", id, err)
			}
		}
	}
	if len(warnings) > 0 {
		if err := j.Record(Event{Type: EventSession, Note: "resumed; the journal had damage: " + strings.Join(warnings, "; ")}); err != nil {
			f.Close()
			return nil, err
		}
	}
	return j, nil
}

// Path is the journal's file.
func (j *Journal) Path() string { return j.path }

// ID is the incident's id, the journal's file name without .jsonl.
func (j *Journal) ID() string { return j.id }

// AddSecret registers a value that must never be written, such as a password typed at
// a prompt or read from a file: every later event has it replaced by [REDACTED].
func (j *Journal) AddSecret(secret string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.red.add(secret)
}

// Record appends an event and syncs it to disk before returning. Seq is set, and Time
// when zero. Secrets are removed here, in one place, whatever the caller put in.
func (j *Journal) Record(e Event) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	if j.f == nil {
		return fmt.Errorf("record in incident %s: journal is closed", j.id)
	}
	// Messages may still be in flight when the incident closes, and the closing update is
	// often sent just after: what was sent, and how it went, is recorded whatever the hour.
	if j.inc.Closed && e.Type != EventNotifySent && e.Type != EventNotifyResult {
		return fmt.Errorf("record %s in incident %s: %w", e.Type, j.id, ErrIncidentClosed)
	}
	if e.Type == "" {
		return fmt.Errorf("record in incident %s: event has no type", j.id)
	}
	if e.Time.IsZero() {
		e.Time = j.Now()
	}
	e.Time = e.Time.UTC()
	j.seq++
	e.Seq = j.seq
	e = j.clean(e)
	line, err := json.Marshal(e)
	if err != nil {
		j.seq--
		return fmt.Errorf("record %s in incident %s: %w", e.Type, j.id, err)
	}
	line = append(line, '\n')
	// One write per line: with O_APPEND a crash leaves at most the last line torn.
	if _, err := j.f.Write(line); err != nil {
		j.err = fmt.Errorf("write incident %s: %w", j.id, err)
		return j.err
	}
	if err := j.f.Sync(); err != nil {
		j.err = fmt.Errorf("sync incident %s: %w", j.id, err)
		return j.err
	}
	j.inc.apply(e)
	return nil
}

var stringType = reflect.TypeFor[string]()

// clean redacts and bounds every text field of an event.
func (j *Journal) clean(e Event) Event {
	v := reflect.ValueOf(&e).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if f.Type() != stringType || f.String() == "" {
			continue
		}
		s := j.red.redact(f.String())
		if v.Type().Field(i).Name == "Output" {
			if len(s) > MaxOutput {
				s = "…" + validUTF8Tail(s[len(s)-MaxOutput:])
				e.OutputTruncated = true
			}
		} else if len(s) > maxText {
			s = validUTF8Head(s[:maxText]) + "…"
		}
		f.SetString(s)
	}
	if e.PITR != nil {
		p := *e.PITR // the server's words, redacted like any text, in a copy
		p.Stopped = j.red.redact(p.Stopped)
		if len(p.Stopped) > maxText {
			p.Stopped = validUTF8Head(p.Stopped[:maxText]) + "…"
		}
		e.PITR = &p
	}
	if len(e.Tables) > 0 {
		// Table names are the backup's words: redacted and bounded like any text, in a copy.
		tables := make([]TableRows, len(e.Tables))
		for i, t := range e.Tables {
			t.Name = j.red.redact(t.Name)
			if len(t.Name) > maxText {
				t.Name = validUTF8Head(t.Name[:maxText]) + "…"
			}
			tables[i] = t
		}
		e.Tables = tables
	}
	return e
}

func validUTF8Tail(s string) string {
	for i := 0; i < len(s) && i < 4; i++ {
		if s[i]&0xC0 != 0x80 {
			return s[i:]
		}
	}
	return s
}

func validUTF8Head(s string) string { return strings.ToValidUTF8(s, "") }

// Incident returns a copy of the incident as recorded so far.
func (j *Journal) Incident() *Incident {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.inc.clone()
}

// CloseIncident records incident_closed with an outcome ("recovered", "abandoned",
// "drill complete") and a note. The file stays open until Close.
func (j *Journal) CloseIncident(outcome, note string) error {
	return j.Record(Event{Type: EventIncidentClosed, Result: outcome, Note: note})
}

// Close closes the journal file; the incident stays open unless CloseIncident was called.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

func lock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return ErrJournalBusy
	}
	return err
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// ReadJournal reads a journal file. Damage a crash can cause (a torn last line) and
// lines that are not events are skipped and reported as warnings, never as an error;
// the error is for a file that cannot be read or holds no incident at all.
func ReadJournal(path string) (*Incident, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read incident: %w", err)
	}
	defer f.Close()
	return readJournal(f, path)
}

func readJournal(r io.Reader, path string) (*Incident, []string, error) {
	id := strings.TrimSuffix(filepath.Base(path), ".jsonl")
	inc := &Incident{ID: id, Path: path}
	var warnings []string
	br := bufio.NewReader(r)
	started := false
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(line) == 0 && err != nil {
			if err != io.EOF {
				return nil, warnings, fmt.Errorf("read incident %s: %w", id, err)
			}
			break
		}
		torn := line[len(line)-1] != '\n'
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var e Event
		if jerr := json.Unmarshal(line, &e); jerr != nil || e.Type == "" {
			if torn {
				warnings = append(warnings, fmt.Sprintf("%s:%d: the last line is cut off (%d bytes), probably by a crash; it is ignored", path, n, len(line)))
			} else {
				warnings = append(warnings, fmt.Sprintf("%s:%d: not a journal event; skipped", path, n))
			}
			continue
		}
		if !started {
			if e.Type != EventIncidentStarted {
				warnings = append(warnings, fmt.Sprintf("%s:%d: %s before the incident started; skipped", path, n, e.Type))
				continue
			}
			started = true
		} else if e.Type == EventIncidentStarted {
			warnings = append(warnings, fmt.Sprintf("%s:%d: a second incident_started; skipped", path, n))
			continue
		}
		inc.apply(e)
	}
	if !started {
		return nil, warnings, fmt.Errorf("read incident %s: %w: the journal has no incident_started event", id, ErrNoIncident)
	}
	return inc, warnings, nil
}

// IncidentSummary is one line of the incident list.
type IncidentSummary struct {
	ID           string    `json:"id"`
	Path         string    `json:"path"`
	Scenario     string    `json:"scenario"`
	ScenarioName string    `json:"scenario_name"`
	Drill        bool      `json:"drill"`
	Operator     string    `json:"operator"`
	Host         string    `json:"host"`
	Started      time.Time `json:"started"`
	Ended        time.Time `json:"ended,omitzero"`
	Closed       bool      `json:"closed"`
	Outcome      string    `json:"outcome,omitempty"`
	LastEvent    time.Time `json:"last_event"`
	StepsDone    int       `json:"steps_done"`
	Steps        int       `json:"steps"`
	Warnings     []string  `json:"warnings,omitempty"`
	Err          string    `json:"error,omitempty"` // the journal could not be read
}

// List reads every journal in the state directory: open incidents first, then the
// rest, newest first within each. A journal that cannot be read is listed with Err set.
func List(stateDir string) ([]IncidentSummary, error) {
	dir := IncidentsDir(stateDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	var out []IncidentSummary
	for _, de := range entries {
		if de.IsDir() || !strings.HasSuffix(de.Name(), ".jsonl") {
			continue
		}
		path := filepath.Join(dir, de.Name())
		inc, warnings, err := ReadJournal(path)
		s := IncidentSummary{ID: strings.TrimSuffix(de.Name(), ".jsonl"), Path: path, Warnings: warnings}
		if err != nil {
			s.Err = err.Error()
			out = append(out, s)
			continue
		}
		s.Scenario, s.ScenarioName, s.Drill = inc.Scenario, inc.ScenarioName, inc.Drill
		s.Operator, s.Host, s.Started, s.Ended = inc.Operator, inc.Host, inc.Started, inc.Ended
		s.Closed, s.Outcome, s.Steps = inc.Closed, inc.Outcome, len(inc.Steps)
		if n := len(inc.Events); n > 0 {
			s.LastEvent = inc.Events[n-1].Time
		}
		for _, st := range inc.Steps {
			if st.Status == StepDone || st.Status == StepSkipped {
				s.StepsDone++
			}
		}
		out = append(out, s)
	}
	sort.SliceStable(out, func(a, b int) bool {
		if out[a].Closed != out[b].Closed {
			return !out[a].Closed
		}
		if !out[a].Started.Equal(out[b].Started) {
			return out[a].Started.After(out[b].Started)
		}
		return out[a].ID > out[b].ID
	})
	return out, nil
}

// LatestPath is the journal of the incident started last in the state directory, open or
// closed; "" when there is none.
func LatestPath(stateDir string) (string, error) {
	list, err := List(stateDir)
	if err != nil {
		return "", err
	}
	var latest *IncidentSummary
	for i := range list {
		if s := &list[i]; s.Err == "" && (latest == nil || s.Started.After(latest.Started)) {
			latest = s
		}
	}
	if latest == nil {
		return "", nil
	}
	return latest.Path, nil
}

// FindIncident resolves an incident named by id, unique id prefix, or path.
func FindIncident(stateDir, name string) (string, error) {
	if strings.ContainsRune(name, os.PathSeparator) || strings.HasSuffix(name, ".jsonl") {
		if _, err := os.Stat(name); err == nil {
			return name, nil
		}
	}
	dir := IncidentsDir(stateDir)
	exact := filepath.Join(dir, name+".jsonl")
	if _, err := os.Stat(exact); err == nil {
		return exact, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("find incident %q: %w", name, err)
	}
	var matches []string
	for _, de := range entries {
		if strings.HasPrefix(de.Name(), name) && strings.HasSuffix(de.Name(), ".jsonl") {
			matches = append(matches, de.Name())
		}
	}
	switch len(matches) {
	case 0:
		return "", fmt.Errorf("%w %q in %s (see drconsole incidents)", ErrNoIncident, name, dir)
	case 1:
		return filepath.Join(dir, matches[0]), nil
	}
	return "", fmt.Errorf("incident %q is ambiguous: %s", name, strings.Join(matches, ", "))
}
