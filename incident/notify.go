package incident

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"drconsole/checklists"
	"drconsole/incident/notify"
)

// UpdateEvery is how often the drafts promise the next update.
const UpdateEvery = 30 * time.Minute

// Occasions a message is drafted for.
const (
	OnStart        = "started"
	OnUpdate       = "update"
	OnRestoreStart = "restore started"
	OnRestoreEnd   = "restore finished"
	OnSwap         = "swapped"
	OnClose        = "closed"
)

// Notify sends m to each channel in the background and returns at once: the journal gets
// notify_sent for each before it is sent and notify_result when its delivery is known, and
// the returned channel gets each Delivery, then is closed. A drill's message is a drill
// whatever m says. Nothing here blocks on the network or stops the recovery; a journal
// that cannot be written is kept in Err, and the messages are still sent.
func (r *Run) Notify(ctx context.Context, s *notify.Sender, chans []*notify.Channel, m notify.Message, step int) <-chan notify.Delivery {
	out := make(chan notify.Delivery, len(chans))
	m.Drill = m.Drill || r.drill
	if m.Incident == "" && r.j != nil {
		m.Incident = r.j.ID()
	}
	if m.Kind == "" {
		m.Kind = notify.KindUpdate
	}
	m = m.Prepared() // journaled as sent: subject filled in, [DRILL] prefixed
	ref := strconv.FormatInt(time.Now().UnixNano(), 36)
	var wg sync.WaitGroup
	for _, ch := range chans {
		if r.j != nil {
			for _, sec := range ch.Secrets() {
				r.j.AddSecret(sec)
			}
		}
		r.Record(checklists.Event{Type: checklists.EventNotifySent, Ref: ref, Channel: ch.Name, Kind: m.Kind, Action: pagerAction(ch, m),
			Step: step, Title: m.Subject, Note: m.Text, Who: r.Operator})
		wg.Add(1)
		go func(ch *notify.Channel) {
			defer wg.Done()
			d := s.Send(ctx, ch, m)
			ev := checklists.Event{Type: checklists.EventNotifyResult, Ref: ref, Channel: ch.Name, Result: checklists.ResultDelivered,
				Attempts: d.Attempts, Seconds: d.Took.Seconds()}
			if d.Err != nil {
				ev.Result, ev.Error = checklists.ResultFailed, d.Err.Error()
			}
			r.Record(ev)
			out <- d
		}(ch)
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

func pagerAction(ch *notify.Channel, m notify.Message) string {
	if ch.Type != notify.TypePagerDuty {
		return ""
	}
	if m.Action == "" {
		return notify.ActionTrigger
	}
	return m.Action
}

// UpdateRecipients are the channels status updates go to: those taking updates, and in a
// drill only those marked for drills.
func UpdateRecipients(chans []*notify.Channel, drill bool) []*notify.Channel {
	var out []*notify.Channel
	for _, c := range chans {
		if c.Updates && (!drill || c.Drills) {
			out = append(out, c)
		}
	}
	return out
}

// EscalationRecipients are the channels that reach role when its level falls due.
func EscalationRecipients(chans []*notify.Channel, role string, drill bool) []*notify.Channel {
	var out []*notify.Channel
	for _, c := range chans {
		if c.Reaches(role) && (!drill || c.Drills) {
			out = append(out, c)
		}
	}
	return out
}

// CloseRecipients are the update channels and the PagerDuty channels this incident
// triggered, so that the close resolves the page.
func CloseRecipients(chans []*notify.Channel, inc *checklists.Incident) []*notify.Channel {
	out := UpdateRecipients(chans, inc.Drill)
	paged := map[string]bool{}
	for _, n := range inc.Notifications {
		if n.Action == notify.ActionTrigger && n.Result == checklists.ResultDelivered {
			paged[n.Channel] = true
		}
	}
	for _, c := range chans {
		if paged[c.Name] && !c.Updates {
			out = append(out, c)
		}
	}
	return out
}

// Draft writes a status update from the incident as recorded at now: scenario, state,
// elapsed time against the RTO, the current step, the restore's progress or result, and
// when the next update is due. The operator edits it before it is sent.
func Draft(inc *checklists.Incident, path []checklists.Escalation, now time.Time, occasion string) notify.Message {
	c := checklists.ClockAt(inc, path, now)
	state := stateOf(inc)
	if occasion == OnClose && !inc.Closed {
		state = "closing: " + state // sent from the close screen, before the outcome is recorded
	}
	m := notify.Message{Incident: inc.ID, Drill: inc.Drill, Kind: notify.KindUpdate, Source: inc.Host}
	m.Subject = fmt.Sprintf("%s: %s, %s of %s RTO", inc.ScenarioName, state, checklists.FormatDuration(c.Elapsed.Truncate(time.Minute)), checklists.FormatDuration(c.RTO))
	if occasion == OnClose {
		m.Action = notify.ActionResolve
	}
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	kind := "Incident"
	if inc.Drill {
		kind = "Drill (an exercise: nothing is down)"
	}
	line("%s %s, worked by %s on %s, started %s.", kind, inc.ID, inc.Operator, inc.Host, inc.Started.UTC().Format("15:04 UTC"))
	line("State: %s.", state)
	switch {
	case c.RTO == 0:
		line("Elapsed: %s.", checklists.FormatDuration(c.Elapsed.Truncate(time.Minute)))
	case c.OverRTO:
		line("Elapsed: %s, over the %s RTO by %s.", checklists.FormatDuration(c.Elapsed.Truncate(time.Minute)), checklists.FormatDuration(c.RTO),
			checklists.FormatDuration((c.Elapsed - c.RTO).Truncate(time.Minute)))
	default:
		line("Elapsed: %s of the %s RTO (%s left).", checklists.FormatDuration(c.Elapsed.Truncate(time.Minute)), checklists.FormatDuration(c.RTO),
			checklists.FormatDuration(c.RTO-c.Elapsed.Truncate(time.Minute)))
	}
	if c.Current > 0 {
		s := c.Steps[c.Current-1]
		budget := ""
		if s.Budget > 0 {
			budget = fmt.Sprintf(", %s of its %s", checklists.FormatDuration(s.Elapsed.Truncate(time.Minute)), checklists.FormatDuration(s.Budget))
		}
		line("Now: step %d of %d, %s%s.", s.Number, len(c.Steps), s.Title, budget)
	}
	if rs := restoreLine(inc); rs != "" {
		line("Restore: %s", rs)
	}
	if c.Level > 0 {
		line("Escalation: level %d, %s.", c.Level, c.Escalation.Role)
	}
	if inc.Closed || occasion == OnClose {
		line("This is the last update.")
	} else {
		line("Next update: by %s.", now.Add(UpdateEvery).UTC().Format("15:04 UTC"))
	}
	m.Text = strings.TrimRight(b.String(), "\n")
	return m
}

// EscalationDraft is the page or mail to an escalation level that fell due.
func EscalationDraft(inc *checklists.Incident, path []checklists.Escalation, now time.Time, level int) notify.Message {
	m := Draft(inc, path, now, OnUpdate)
	if level < 1 || level > len(path) {
		return m
	}
	role := path[level-1].Role
	m.Kind = notify.KindEscalation
	m.Subject = fmt.Sprintf("Escalation to %s: %s, %s", role, inc.ScenarioName, strings.SplitN(m.Subject, ": ", 2)[len(strings.SplitN(m.Subject, ": ", 2))-1])
	m.Text = fmt.Sprintf("The runbook's escalation path reaches level %d, %s, at %s.\n%s", level, role, checklists.FormatDuration(path[level-1].From), m.Text)
	return m
}

// stateOf says where the incident stands, in a few words.
func stateOf(inc *checklists.Incident) string {
	if inc.Closed {
		return "closed, " + inc.Outcome
	}
	rs := inc.Restore()
	if rs == nil {
		return "recovery in progress"
	}
	switch rs.State() {
	case checklists.ResultOK:
		if rs.Mode == "test" {
			return "test restore made and checked"
		}
		return "recovered from backup"
	case checklists.StateRunning:
		return "restore running"
	case checklists.StateLoaded:
		return "restored copy checked, swap next"
	case checklists.StateSwapping:
		return "swapping in the restored copy"
	case checklists.ResultFailed:
		return "restore failed"
	case checklists.ResultUnknown:
		return "swap outcome unknown"
	}
	return "restore " + rs.State()
}

// restoreLine is the restore's progress or result in one line.
func restoreLine(inc *checklists.Incident) string {
	rs := inc.Restore()
	if rs == nil {
		return ""
	}
	s := rs.Backup
	switch rs.State() {
	case checklists.StateRunning:
		if n := len(rs.Milestones); n > 0 {
			s += ", " + rs.Milestones[n-1].Text
		}
	case checklists.StateLoaded:
		s += fmt.Sprintf(", loaded into %s and checked", rs.ScratchDB)
	case checklists.ResultOK:
		if rs.Detail != "" {
			s += ", " + rs.Detail
		} else {
			s += ", live as " + rs.Database
		}
		if rs.KeptDB != "" {
			s += "; the old database is kept as " + rs.KeptDB
		}
	default:
		s += ", " + rs.State()
		if rs.Error != "" {
			s += ": " + rs.Error
		}
	}
	if len(inc.Restores) > 1 {
		s += fmt.Sprintf(" (attempt %d)", len(inc.Restores))
	}
	return s + "."
}
