package checklists

import (
	"fmt"
	"strings"
	"time"
)

// Report is what an incident comes to: the post-mortem's facts. Its JSON is the
// --json output of drconsole report; Markdown gives the text.
type Report struct {
	ID           string     `json:"id"`
	Scenario     string     `json:"scenario"`
	ScenarioName string     `json:"scenario_name"`
	Drill        bool       `json:"drill"`
	Operator     string     `json:"operator"`
	Host         string     `json:"host"`
	Started      time.Time  `json:"started"`
	Ended        *time.Time `json:"ended,omitempty"` // nil while open
	AsOf         time.Time  `json:"as_of"`           // the moment the figures are for
	Closed       bool       `json:"closed"`
	Outcome      string     `json:"outcome,omitempty"`

	RTOTargetMinutes   float64  `json:"rto_target_minutes"`
	RTOAchievedMinutes float64  `json:"rto_achieved_minutes"`
	RTOMet             bool     `json:"rto_met"`
	RPOTargetMinutes   float64  `json:"rpo_target_minutes"`
	RPOAchievedMinutes *float64 `json:"rpo_achieved_minutes,omitempty"` // nil: no backup with a known time
	RPOMet             *bool    `json:"rpo_met,omitempty"`
	PlanWarning        string   `json:"plan_warning,omitempty"`

	Timeline []ReportStep `json:"timeline"`
	// Injects are a drill's injects that fell due, listed under the timeline.
	Injects []ReportInject `json:"injects,omitempty"`
	// Notifications are the updates and pages sent, one per channel; Escalations the
	// levels that fell due and what was done. Both are part of the timeline.
	Notifications []ReportNotification `json:"notifications"`
	Escalations   []ReportEscalation   `json:"escalations"`
	Commands      []ReportCommand      `json:"commands"`
	Backup        *ReportBackup        `json:"backup,omitempty"`
	PointInTime   *ReportPITR          `json:"point_in_time,omitempty"` // a point-in-time recovery: base backup, WAL, timelines
	Restore       *ReportRestore       `json:"restore,omitempty"`
	Checks        []ReportCheck        `json:"checks"`
	Checklist     []ReportTick         `json:"checklist"`
	Notes         []ReportNote         `json:"notes"`
	Sessions      []ReportNote         `json:"sessions"`
	Warnings      []string             `json:"warnings,omitempty"` // damage found reading the journal
}

// ReportStep is a row of the timeline.
type ReportStep struct {
	Number          int        `json:"number"`
	Title           string     `json:"title"`
	Status          StepStatus `json:"status"`
	Started         *time.Time `json:"started,omitempty"`
	Ended           *time.Time `json:"ended,omitempty"`
	DurationMinutes float64    `json:"duration_minutes"`
	BudgetMinutes   float64    `json:"budget_minutes"`
	OverMinutes     float64    `json:"over_minutes"` // negative: under budget; 0 for untimed
	Over            bool       `json:"over"`
	Note            string     `json:"note,omitempty"`
}

// ReportInject is a drill's inject that fell due: what the team was shown, what was
// applied to the sandbox, and when they acknowledged it.
type ReportInject struct {
	Time    time.Time  `json:"time"`
	Step    int        `json:"step,omitempty"`
	Event   string     `json:"event"`
	Detail  string     `json:"detail,omitempty"`
	Apply   string     `json:"apply,omitempty"`
	Level   int        `json:"level,omitempty"`
	Result  string     `json:"result"`
	Error   string     `json:"error,omitempty"`
	Applied string     `json:"applied,omitempty"`
	Acked   *time.Time `json:"acknowledged,omitempty"`
	AckedBy string     `json:"acknowledged_by,omitempty"`
}

// ReportNotification is one message sent to one channel, and its delivery.
type ReportNotification struct {
	Time            time.Time `json:"time"`
	Step            int       `json:"step,omitempty"`
	Channel         string    `json:"channel"`
	Kind            string    `json:"kind"`
	Action          string    `json:"action,omitempty"`
	Subject         string    `json:"subject"`
	Text            string    `json:"text,omitempty"`
	Who             string    `json:"who,omitempty"`
	Result          string    `json:"result"` // delivered, failed, or unknown: no result recorded
	Error           string    `json:"error,omitempty"`
	Attempts        int       `json:"attempts"`
	DurationSeconds float64   `json:"duration_seconds"`
}

// ReportEscalation is an escalation level answered: paged, mailed or declined.
type ReportEscalation struct {
	Time   time.Time `json:"time"`
	Level  int       `json:"level"`
	Role   string    `json:"role"`
	Result string    `json:"result"`
	Who    string    `json:"who,omitempty"`
}

// ReportCommand is a command run, or recorded as a drill's would-have-run.
type ReportCommand struct {
	Time            time.Time `json:"time"`
	Step            int       `json:"step,omitempty"`
	Command         string    `json:"command"`
	DryRun          bool      `json:"dry_run,omitempty"`
	ExitCode        *int      `json:"exit_code,omitempty"`
	DurationSeconds float64   `json:"duration_seconds"`
	Error           string    `json:"error,omitempty"`
}

// ReportBackup is the backup restored.
type ReportBackup struct {
	Name      string     `json:"name"`
	Location  string     `json:"location,omitempty"`
	Taken     *time.Time `json:"taken,omitempty"`
	SizeBytes int64      `json:"size_bytes,omitempty"`
}

// ReportPITR is a point-in-time recovery: the target (UTC), the base backup, the WAL
// range replayed, the timeline followed and the new one, where recovery stopped and the
// RPO achieved: the incident's start minus the recovery point.
type ReportPITR struct {
	Result             string     `json:"result"`
	Error              string     `json:"error,omitempty"`
	Target             string     `json:"target"` // in words, with UTC
	TargetKind         string     `json:"target_kind"`
	TargetTime         *time.Time `json:"target_time,omitempty"`
	TargetLSN          string     `json:"target_lsn,omitempty"`
	BaseBackup         string     `json:"base_backup"`
	BaseLocation       string     `json:"base_location,omitempty"`
	BaseConsistent     *time.Time `json:"base_consistent,omitempty"`
	FirstSegment       string     `json:"first_segment,omitempty"`
	LastSegment        string     `json:"last_segment,omitempty"`
	Segments           int        `json:"segments,omitempty"`
	Timeline           int        `json:"timeline,omitempty"`
	NewTimeline        int        `json:"new_timeline,omitempty"`
	Stopped            string     `json:"stopped,omitempty"`
	RecoveryPoint      *time.Time `json:"recovery_point,omitempty"`
	RPOAchievedMinutes *float64   `json:"rpo_achieved_minutes,omitempty"`
	RPOTargetMinutes   float64    `json:"rpo_target_minutes"`
	RPOMet             *bool      `json:"rpo_met,omitempty"`
	Database           string     `json:"database,omitempty"`
	PgData             string     `json:"pgdata,omitempty"`
	DurationSeconds    float64    `json:"duration_seconds"`
}

// ReportRestore is the restore's figures. Result is its final state: ok only when the
// restored copy is live (swapped in or created) or, for a test restore, made; else failed,
// cancelled, abandoned, interrupted, unknown (a swap cut off), swapping, loaded or running.
type ReportRestore struct {
	Result          string       `json:"result"`
	Mode            string       `json:"mode,omitempty"`
	Swap            string       `json:"swap,omitempty"` // the swap's result, when one started
	Detail          string       `json:"detail,omitempty"`
	Error           string       `json:"error,omitempty"`
	Bytes           int64        `json:"bytes"`
	DurationSeconds float64      `json:"duration_seconds"`
	BytesPerSecond  float64      `json:"bytes_per_second"`
	Database        string       `json:"database,omitempty"`
	ScratchDB       string       `json:"scratch_db,omitempty"`
	KeptDB          string       `json:"kept_db,omitempty"`
	Milestones      []ReportNote `json:"milestones"`
	Attempts        int          `json:"attempts"`
	Rows            []TableRows  `json:"rows,omitempty"` // each table's rows: archive, restored copy, live
}

// ReportCheck is a check's result.
type ReportCheck struct {
	Time   time.Time `json:"time"`
	Name   string    `json:"name"`
	Result string    `json:"result"`
	Detail string    `json:"detail,omitempty"`
}

// ReportTick is a post-recovery checklist item and who ticked it when.
type ReportTick struct {
	Item   string     `json:"item"`
	Ticked bool       `json:"ticked"`
	Who    string     `json:"who,omitempty"`
	Time   *time.Time `json:"time,omitempty"`
}

// ReportNote is a timestamped line.
type ReportNote struct {
	Time time.Time `json:"time"`
	Who  string    `json:"who,omitempty"`
	Text string    `json:"text"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// BuildReport makes the report of an incident as of now (for a closed incident, its end).
// warnings are the journal's damage as ReadJournal reported it.
func BuildReport(inc *Incident, warnings []string, now time.Time) *Report {
	c := ClockAt(inc, nil, now)
	r := &Report{
		ID: inc.ID, Scenario: inc.Scenario, ScenarioName: inc.ScenarioName, Drill: inc.Drill,
		Operator: inc.Operator, Host: inc.Host, Started: inc.Started, AsOf: c.At,
		Closed: inc.Closed, Outcome: inc.Outcome, Warnings: warnings,
		RTOTargetMinutes: inc.Plan.RTOMinutes, RTOAchievedMinutes: c.Elapsed.Minutes(), RTOMet: !c.OverRTO,
		RPOTargetMinutes: inc.Plan.RPOMinutes,
		Commands:         []ReportCommand{}, Notifications: []ReportNotification{}, Escalations: []ReportEscalation{}, Checks: []ReportCheck{}, Checklist: []ReportTick{}, Notes: []ReportNote{}, Sessions: []ReportNote{},
	}
	if inc.Closed {
		r.Ended = timePtr(inc.Ended)
	}
	var planned time.Duration
	for _, s := range inc.Steps {
		planned += s.Budget
	}
	if rto := inc.Plan.RTO(); rto > 0 && planned > rto {
		r.PlanWarning = fmt.Sprintf("the steps' budgets add up to %s, more than the %s RTO: the plan could not meet its target as written",
			FormatDuration(planned), FormatDuration(rto))
	}
	for i, s := range inc.Steps {
		sc := c.Steps[i]
		row := ReportStep{Number: s.Number, Title: s.Title, Status: s.Status, Started: timePtr(s.Started), Ended: timePtr(s.Ended),
			DurationMinutes: sc.Elapsed.Minutes(), BudgetMinutes: s.Budget.Minutes(), Over: sc.Over, Note: s.Note}
		if s.Budget > 0 && !s.Started.IsZero() {
			row.OverMinutes = (sc.Elapsed - s.Budget).Minutes()
		}
		r.Timeline = append(r.Timeline, row)
	}
	for _, in := range inc.Injects {
		r.Injects = append(r.Injects, ReportInject{Time: in.Time, Step: in.Step, Event: in.Event, Detail: in.Detail, Apply: in.Apply, Level: in.Level,
			Result: in.Result, Error: in.Error, Applied: in.Applied, Acked: timePtr(in.Acked), AckedBy: in.AckedBy})
	}
	for _, n := range inc.Notifications {
		res := n.Result
		if res == "" {
			res = ResultUnknown
		}
		r.Notifications = append(r.Notifications, ReportNotification{Time: n.Time, Step: n.Step, Channel: n.Channel, Kind: n.Kind, Action: n.Action,
			Subject: n.Subject, Text: n.Text, Who: n.Who, Result: res, Error: n.Error, Attempts: n.Attempts, DurationSeconds: n.Duration.Seconds()})
	}
	for _, e := range inc.Escalations {
		r.Escalations = append(r.Escalations, ReportEscalation{Time: e.Time, Level: e.Level, Role: e.Role, Result: e.Result, Who: e.Who})
	}
	for _, cmd := range inc.Commands {
		if !cmd.Ran && !cmd.DryRun {
			continue // only shown
		}
		r.Commands = append(r.Commands, ReportCommand{Time: cmd.Time, Step: cmd.Step, Command: cmd.Command, DryRun: cmd.DryRun,
			ExitCode: cmd.ExitCode, DurationSeconds: cmd.Duration.Seconds(), Error: cmd.Error})
	}
	if b := inc.Backup; b != nil {
		r.Backup = &ReportBackup{Name: b.Name, Location: b.Location, Taken: b.Taken, SizeBytes: b.Size}
		if b.Taken != nil {
			rpo := inc.Started.Sub(*b.Taken)
			m := rpo.Minutes()
			met := rpo <= inc.Plan.RPO()
			r.RPOAchievedMinutes, r.RPOMet = &m, &met
		}
	}
	if p := inc.PITR; p != nil {
		rp := &ReportPITR{Result: p.Result, Error: p.Error, Target: p.Target(), TargetKind: p.TargetKind, TargetTime: p.TargetTime, TargetLSN: p.TargetLSN,
			BaseBackup: p.BaseBackup, BaseLocation: p.BaseLocation, BaseConsistent: p.BaseConsistent, FirstSegment: p.FirstSegment, LastSegment: p.LastSegment,
			Segments: p.Segments, Timeline: p.Timeline, NewTimeline: p.NewTimeline, Stopped: p.Stopped, RecoveryPoint: p.RecoveryPoint,
			RPOTargetMinutes: inc.Plan.RPOMinutes, Database: p.Database, PgData: p.PgData, DurationSeconds: p.Duration.Seconds()}
		if p.RecoveryPoint != nil && p.Result == ResultOK {
			// What the recovery brought back is the incident's RPO, whatever backup
			// carried it on afterwards (the dump of the recovered database).
			rpo := max(inc.Started.Sub(*p.RecoveryPoint), 0)
			m := rpo.Minutes()
			met := inc.Plan.RPO() == 0 || rpo <= inc.Plan.RPO()
			rp.RPOAchievedMinutes, rp.RPOMet = &m, &met
			r.RPOAchievedMinutes, r.RPOMet = &m, &met
		}
		r.PointInTime = rp
	}
	if rs := inc.Restore(); rs != nil {
		rr := &ReportRestore{Result: rs.State(), Mode: rs.Mode, Detail: rs.Detail, Error: rs.Error, Bytes: rs.Bytes, DurationSeconds: rs.Duration.Seconds(),
			Database: rs.Database, ScratchDB: rs.ScratchDB, KeptDB: rs.KeptDB, Attempts: len(inc.Restores), Milestones: []ReportNote{},
			Rows: rs.Rows}
		if rs.Swap != nil {
			rr.Swap = rs.Swap.Result
			if rr.Swap == "" {
				rr.Swap = "started, end not recorded"
			}
		}
		if rs.Result != ResultOK && rs.Mode != "test" && (rs.Swap == nil || rs.Swap.Result != ResultOK) {
			rr.KeptDB = "" // no swap happened: nothing was kept
		}
		if rs.Duration > 0 {
			rr.BytesPerSecond = float64(rs.Bytes) / rs.Duration.Seconds()
		}
		for _, m := range rs.Milestones {
			rr.Milestones = append(rr.Milestones, ReportNote{Time: m.Time, Text: m.Text})
		}
		if r.Backup == nil && rs.Backup != "" {
			r.Backup = &ReportBackup{Name: rs.Backup}
		}
		r.Restore = rr
	}
	for _, ch := range inc.Checks {
		r.Checks = append(r.Checks, ReportCheck{Time: ch.Time, Name: ch.Name, Result: ch.Result, Detail: ch.Detail})
	}
	listed := map[string]bool{}
	for _, item := range inc.Plan.Checklist {
		t := ReportTick{Item: item}
		if tick, ok := inc.Ticked(item); ok {
			t.Ticked, t.Who, t.Time = true, tick.Who, timePtr(tick.Time)
		}
		listed[item] = true
		r.Checklist = append(r.Checklist, t)
	}
	for _, tick := range inc.Ticks { // items ticked that the plan did not list
		if tick.Step == 0 && !listed[tick.Item] {
			listed[tick.Item] = true
			r.Checklist = append(r.Checklist, ReportTick{Item: tick.Item, Ticked: true, Who: tick.Who, Time: timePtr(tick.Time)})
		}
	}
	for _, n := range inc.Notes {
		r.Notes = append(r.Notes, ReportNote{Time: n.Time, Who: n.Who, Text: n.Text})
	}
	for _, n := range inc.Sessions {
		r.Sessions = append(r.Sessions, ReportNote{Time: n.Time, Who: n.Who, Text: n.Text})
	}
	return r
}

// Markdown writes the report for people: the post-mortem's starting point.
func (r *Report) Markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	kind := "Incident"
	if r.Drill {
		kind = "Drill"
	}
	p("# %s report: %s\n\n", kind, r.ScenarioName)
	p("| | |\n| --- | --- |\n")
	p("| Incident | `%s` |\n", r.ID)
	p("| Scenario | %s (`%s`) |\n", cell(r.ScenarioName), r.Scenario)
	if r.Drill {
		p("| Kind | drill (nothing was changed for real) |\n")
	} else {
		p("| Kind | real incident |\n")
	}
	p("| Operator | %s on %s |\n", cell(r.Operator), cell(r.Host))
	p("| Started | %s |\n", stamp(r.Started))
	if r.Ended != nil {
		p("| Ended | %s |\n", stamp(*r.Ended))
		p("| Outcome | %s |\n", cell(r.Outcome))
	} else {
		p("| Ended | still open at %s |\n", stamp(r.AsOf))
	}

	p("\n## Objectives\n\n| | Target | Achieved | |\n| --- | --- | --- | --- |\n")
	rtoVerdict := "met"
	if !r.RTOMet {
		rtoVerdict = "**missed**"
	}
	if r.Ended == nil {
		rtoVerdict += " so far"
	}
	p("| RTO | %s | %s | %s |\n", mins(r.RTOTargetMinutes), mins(r.RTOAchievedMinutes), rtoVerdict)
	switch {
	case r.RPOAchievedMinutes != nil:
		v := "met"
		if !*r.RPOMet {
			v = "**missed**"
		}
		from := "the backup's time"
		if r.PointInTime != nil && r.PointInTime.RPOAchievedMinutes != nil {
			from = "the recovery point"
		}
		p("| RPO | %s | %s (incident start minus %s) | %s |\n", mins(r.RPOTargetMinutes), mins(*r.RPOAchievedMinutes), from, v)
	default:
		p("| RPO | %s | unknown: no restored backup with a known time | |\n", mins(r.RPOTargetMinutes))
	}
	if r.PlanWarning != "" {
		p("\n> **Warning:** %s.\n", r.PlanWarning)
	}

	p("\n## Timeline\n\n| # | Step | Start | End | Duration | Budget | Over/under |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, s := range r.Timeline {
		start, end, dur, verdict := "", "", "", string(s.Status)
		if s.Started != nil {
			start, dur = r.clock(*s.Started), mins(s.DurationMinutes)
		}
		if s.Ended != nil {
			end = r.clock(*s.Ended)
		}
		budget := "untimed"
		if s.BudgetMinutes > 0 {
			budget = mins(s.BudgetMinutes)
			if s.Started != nil {
				switch {
				case s.Over:
					verdict = "**" + mins(s.OverMinutes) + " over**"
				default:
					verdict = mins(-s.OverMinutes) + " under"
				}
				if s.Status != StepDone {
					verdict += " (" + string(s.Status) + ")"
				}
			}
		}
		title := cell(s.Title)
		if s.Note != "" {
			title += ": " + cell(s.Note)
		}
		p("| %d | %s | %s | %s | %s | %s | %s |\n", s.Number, title, start, end, dur, budget, verdict)
	}

	if len(r.Injects) > 0 {
		p("\nInjects:\n\n")
		for _, in := range r.Injects {
			p("- %s", r.clock(in.Time))
			if in.Step > 0 {
				p(" (step %d)", in.Step)
			}
			p(" **%s**", oneLine(in.Event))
			if in.Detail != "" {
				p(": %s", strings.TrimRight(oneLine(in.Detail), "."))
			}
			switch {
			case in.Result == ResultFailed:
				p("; %s **could not be applied**: %s", in.Apply, oneLine(in.Error))
			case in.Apply == "escalate" && in.Level > 0:
				p("; escalation level %d due", in.Level)
			case in.Result == ResultApplied:
				p("; applied: %s", oneLine(in.Applied))
			}
			if in.Acked != nil {
				p("; acknowledged %s", r.clock(*in.Acked))
				if in.AckedBy != "" {
					p(" by %s", oneLine(in.AckedBy))
				}
			} else {
				p("; **not acknowledged**")
			}
			p("\n")
		}
	}

	if len(r.Notifications) > 0 || len(r.Escalations) > 0 {
		p("\n## Updates and pages\n\n")
		for _, e := range r.Escalations {
			who := ""
			if e.Who != "" {
				who = " by " + oneLine(e.Who)
			}
			p("- %s escalation level %d, %s: %s%s\n", r.clock(e.Time), e.Level, oneLine(e.Role), e.Result, who)
		}
		if len(r.Escalations) > 0 && len(r.Notifications) > 0 {
			p("\n")
		}
		if len(r.Notifications) > 0 {
			p("| Time | Step | Channel | Message | Delivery |\n| --- | --- | --- | --- | --- |\n")
		}
		for _, n := range r.Notifications {
			step := ""
			if n.Step > 0 {
				step = fmt.Sprint(n.Step)
			}
			what := n.Kind
			if n.Action != "" && n.Action != "trigger" {
				what += " (" + n.Action + ")"
			}
			res := n.Result
			switch n.Result {
			case ResultDelivered:
				res = fmt.Sprintf("delivered in %.1fs", n.DurationSeconds)
				if n.Attempts > 1 {
					res += fmt.Sprintf(", attempt %d", n.Attempts)
				}
			case ResultUnknown:
				res = "**no result recorded**: still sending, or drconsole ended first"
			default:
				res = "**" + n.Result + "**"
				if n.Error != "" {
					res += ": " + n.Error
				}
			}
			p("| %s | %s | %s | %s: %s | %s |\n", r.clock(n.Time), step, cell(n.Channel), what, cell(n.Subject), cell(res))
		}
	}

	p("\n## Commands run\n\n")
	if len(r.Commands) == 0 {
		p("None.\n")
	}
	for _, c := range r.Commands {
		result := "no exit code"
		switch {
		case c.DryRun:
			result = "drill: not run"
		case c.ExitCode != nil:
			result = fmt.Sprintf("exit %d", *c.ExitCode)
		}
		if c.Error != "" {
			result += ", " + oneLine(c.Error)
		}
		where := ""
		if c.Step > 0 {
			where = fmt.Sprintf(" step %d,", c.Step)
		}
		p("- %s%s %s: %s\n", r.clock(c.Time), where, result, code(oneLine(c.Command)))
	}

	if pt := r.PointInTime; pt != nil {
		b.WriteString(pt.markdown())
	}

	p("\n## Restore\n\n")
	if r.Backup == nil && r.Restore == nil {
		p("No restore was recorded.\n")
	}
	if bk := r.Backup; bk != nil {
		p("- Backup: %s", code(bk.Name))
		if bk.Location != "" {
			p(" from %s", code(bk.Location))
		}
		p("\n")
		if bk.Taken != nil {
			p("- Taken: %s\n", stamp(*bk.Taken))
		}
		if bk.SizeBytes > 0 {
			p("- Size: %s\n", HumanBytes(bk.SizeBytes))
		}
	}
	if rs := r.Restore; rs != nil {
		p("- Result: %s", rs.Result)
		if rs.Detail != "" {
			p(": %s", oneLine(rs.Detail))
		}
		if rs.Error != "" {
			p(" (%s)", oneLine(rs.Error))
		}
		if rs.Attempts > 1 {
			p(", after %d attempts", rs.Attempts)
		}
		p("\n")
		if rs.Swap != "" {
			p("- Swap: %s\n", rs.Swap)
		}
		if rs.DurationSeconds > 0 {
			p("- Duration: %s\n", FormatDuration(time.Duration(rs.DurationSeconds*float64(time.Second))))
		}
		if rs.Bytes > 0 {
			p("- Restored: %s", HumanBytes(rs.Bytes))
			if rs.BytesPerSecond > 0 {
				p(" at %s/s", HumanBytes(int64(rs.BytesPerSecond)))
			}
			p("\n")
		}
		if rs.ScratchDB != "" {
			p("- Scratch database: %s\n", code(rs.ScratchDB))
		}
		if rs.Database != "" {
			p("- Database: %s\n", code(rs.Database))
		}
		if rs.KeptDB != "" {
			p("- Previous database kept as: %s\n", code(rs.KeptDB))
		}
		for _, m := range rs.Milestones {
			p("  - %s %s\n", r.clock(m.Time), oneLine(m.Text))
		}
		if len(rs.Rows) > 0 {
			b.WriteString(rowsTable(rs.Rows))
		}
	}

	p("\n## Checks\n\n")
	if len(r.Checks) == 0 {
		p("None recorded.\n")
	} else {
		p("| Time | Check | Result | Detail |\n| --- | --- | --- | --- |\n")
		for _, c := range r.Checks {
			res := c.Result
			if res != CheckPass {
				res = "**" + res + "**"
			}
			p("| %s | %s | %s | %s |\n", r.clock(c.Time), cell(c.Name), res, cell(c.Detail))
		}
	}

	p("\n## Post-recovery checklist\n\n")
	for _, t := range r.Checklist {
		if t.Ticked {
			who := t.Who
			if who == "" {
				who = "someone"
			}
			p("- [x] %s (%s at %s)\n", oneLine(t.Item), oneLine(who), r.clock(*t.Time))
		} else {
			p("- [ ] %s\n", oneLine(t.Item))
		}
	}

	if len(r.Notes) > 0 {
		p("\n## Notes\n\n")
		for _, n := range r.Notes {
			who := ""
			if n.Who != "" {
				who = " " + oneLine(n.Who) + ":"
			}
			p("- %s%s %s\n", r.clock(n.Time), who, oneLine(n.Text))
		}
	}
	if len(r.Sessions) > 0 {
		p("\n## Sessions\n\n")
		for _, n := range r.Sessions {
			p("- %s %s\n", r.clock(n.Time), oneLine(n.Text))
		}
	}
	if len(r.Warnings) > 0 {
		p("\n## Journal damage\n\n")
		for _, w := range r.Warnings {
			p("- %s\n", oneLine(w))
		}
	}
	return b.String()
}

// markdown is the "Point in time" block: what the recovery aimed at, from what, along
// which WAL and timeline, where it stopped, and the RPO that achieved.
func (pt *ReportPITR) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("\n## Point in time\n\n")
	res := pt.Result
	if res != ResultOK {
		res = "**" + res + "**"
		if pt.Error != "" {
			res += ": " + oneLine(pt.Error)
		}
	}
	p("- Result: %s", res)
	if pt.DurationSeconds > 0 {
		p(" in %s", FormatDuration(time.Duration(pt.DurationSeconds*float64(time.Second))))
	}
	p("\n- Target: %s\n", pt.Target)
	p("- Base backup: %s", code(pt.BaseBackup))
	if pt.BaseLocation != "" {
		p(" from %s", code(pt.BaseLocation))
	}
	if pt.BaseConsistent != nil {
		p(", consistent from %s", stamp(*pt.BaseConsistent))
	}
	p("\n")
	if pt.FirstSegment != "" {
		p("- WAL: %s to %s", code(pt.FirstSegment), code(pt.LastSegment))
		if pt.Segments > 0 {
			p(" (%d segments)", pt.Segments)
		}
		p("\n")
	}
	if pt.Timeline > 0 {
		p("- Timeline: followed %d", pt.Timeline)
		if pt.NewTimeline > 0 {
			p(", promoted to %d", pt.NewTimeline)
		}
		p("\n")
	}
	if pt.RecoveryPoint != nil {
		p("- Recovery point: %s", pt.RecoveryPoint.UTC().Format("2006-01-02 15:04:05.000 UTC"))
		if pt.Stopped != "" {
			p(" (the server: %s)", oneLine(pt.Stopped))
		}
		p("\n")
	} else if pt.Stopped != "" {
		p("- Recovery stopped: %s\n", oneLine(pt.Stopped))
	}
	switch {
	case pt.RPOAchievedMinutes != nil:
		v := "met"
		if !*pt.RPOMet {
			v = "**missed**"
		}
		p("- RPO achieved: %s (incident start minus the recovery point) against the scenario's %s: %s\n", mins(*pt.RPOAchievedMinutes), mins(pt.RPOTargetMinutes), v)
	default:
		p("- RPO achieved: unknown (no recovery point) against the scenario's %s\n", mins(pt.RPOTargetMinutes))
	}
	switch {
	case pt.Database != "":
		p("- Into: the database %s, through the restore below\n", code(pt.Database))
	case pt.PgData != "":
		p("- Into: the data directory %s\n", code(pt.PgData))
	}
	return b.String()
}

// rowsTable is every table's rows in the restore, the ones that matched too: they are the
// proof that every row arrived. A table whose copy did not hold the archive's rows is in
// bold, and the line above the table counts them.
func rowsTable(rows []TableRows) string {
	var b strings.Builder
	var bad []string
	uncounted, unknown := 0, false
	for _, t := range rows {
		if !t.RowsOK() {
			bad = append(bad, t.Name)
		}
		if t.State == "uncounted" {
			uncounted++
		}
		unknown = unknown || t.Archive < 0 || t.Restored < 0 || t.Live < 0
	}
	b.WriteString("\n### Rows of every table\n\n")
	switch {
	case len(bad) > 0:
		fmt.Fprintf(&b, "**%d of %d tables did not hold the archive's rows:** %s.\n\n", len(bad), len(rows), cell(strings.Join(bad, ", ")))
	case uncounted > 0:
		fmt.Fprintf(&b, "%d of %d tables held the archive's rows; %d could not be counted.\n\n", len(rows)-uncounted, len(rows), uncounted)
	default:
		fmt.Fprintf(&b, "%d tables, every row as in the archive.\n\n", len(rows))
	}
	b.WriteString("| Table | Archive rows | Restored rows | Live rows | |\n| --- | ---: | ---: | ---: | --- |\n")
	for _, t := range rows {
		name, state := cell(t.Name), cell(t.State)
		if !t.RowsOK() {
			name, state = "**"+name+"**", "**"+state+"**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", name, rowCount(t.Archive), rowCount(t.Restored), rowCount(t.Live), state)
	}
	if unknown {
		b.WriteString("\n?: not known (not counted, no such table, or no live database to compare with).\n")
	}
	return b.String()
}

func rowCount(n int64) string {
	if n < 0 {
		return "?"
	}
	return fmt.Sprint(n)
}

// clock writes a time of the incident: the time of day on the start's day, else the date too.
func (r *Report) clock(t time.Time) string {
	t = t.UTC()
	s := r.Started.UTC()
	if t.YearDay() == s.YearDay() && t.Year() == s.Year() {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04:05")
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

func mins(m float64) string {
	return FormatDuration(time.Duration(m * float64(time.Minute)))
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r", "")
	return strings.ReplaceAll(s, "\n", " ⏎ ")
}

// cell makes text safe in a Markdown table cell.
func cell(s string) string { return strings.ReplaceAll(oneLine(s), "|", `\|`) }

// code puts text in a code span whose fence no backtick run inside it can close.
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}

// HumanBytes writes a size in binary units: 512 B, 1.5 KiB, 3.2 GiB.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// GroupDigits writes a count with its thousands separated, 12,000,000, so that a large
// count reads at a glance in a line that changes as it grows.
func GroupDigits(n int64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
