package ui

import (
	"fmt"
	"strings"
	"sync"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textarea"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"

	"drconsole/checklists"
	"drconsole/incident"
	"drconsole/incident/notify"
)

// notifyScreen drafts a status update (or an escalation's page or mail) from the incident,
// lets the operator edit it, and sends it only once they confirm. Delivery runs in the
// background; the root model reports each channel's result on the status line.
type notifyScreen struct {
	s        *session
	step     int    // the step it belongs to, 0 for none
	occasion string // what it is about: incident.OnUpdate, OnClose, …
	level    int    // an escalation level being paged or mailed, 0 for an update
	role     string
	to       []*notify.Channel
	draft    notify.Message
	subject  textinput.Model
	body     textarea.Model
	mode     notifyMode
}

type notifyMode int

const (
	notifyReview notifyMode = iota
	notifyEditSubject
	notifyEditBody
	notifyConfirm
)

var (
	keyUpdate  = key.NewBinding(key.WithKeys("u"), key.WithHelp("u", "send an update"))
	keyPage    = key.NewBinding(key.WithKeys("p"), key.WithHelp("p", "page the escalation due"))
	keyEdit    = key.NewBinding(key.WithKeys("e"), key.WithHelp("e", "edit"))
	keySend    = key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "send…"))
	keyDecline = key.NewBinding(key.WithKeys("n"), key.WithHelp("n", "decline (recorded)"))
	keyField   = key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab", "subject/text"))
)

// Messages of the sending in the background.
type (
	// notifyDeliveredMsg: one channel's delivery is known; next waits for the others.
	notifyDeliveredMsg struct {
		d    notify.Delivery
		next tea.Cmd
	}
	// notifyFinishedMsg: every channel of a message has its result (all journaled).
	notifyFinishedMsg struct{ sent, failed int }
)

// newUpdateScreen drafts a status update for occasion, to the channels taking updates.
func newUpdateScreen(s *session, step int, occasion string) *notifyScreen {
	inc := s.current()
	to := incident.UpdateRecipients(s.opt.Notify, s.drill)
	if occasion == incident.OnClose {
		to = incident.CloseRecipients(s.opt.Notify, inc)
	}
	m := incident.Draft(inc, s.opt.Runbook.Escalation, s.now, occasion)
	return newNotifyScreen(s, step, occasion, 0, "", to, m)
}

// newEscalationScreen drafts the page or mail to escalation level (1-based).
func newEscalationScreen(s *session, level int) *notifyScreen {
	role := s.opt.Runbook.Escalation[level-1].Role
	to := incident.EscalationRecipients(s.opt.Notify, role, s.drill)
	m := incident.EscalationDraft(s.current(), s.opt.Runbook.Escalation, s.now, level)
	return newNotifyScreen(s, 0, incident.OnUpdate, level, role, to, m)
}

// current is the incident as journaled now, with what the restore's own goroutines
// recorded since the screens last refreshed (memory only: no I/O).
func (s *session) current() *checklists.Incident {
	if s.journal != nil {
		return s.journal.Incident()
	}
	return s.inc
}

func newNotifyScreen(s *session, step int, occasion string, level int, role string, to []*notify.Channel, m notify.Message) *notifyScreen {
	n := &notifyScreen{s: s, step: step, occasion: occasion, level: level, role: role, to: to, draft: m}
	n.subject = newField(s, "subject: ", false)
	n.subject.SetValue(m.Prepared().Subject)
	n.subject.CursorStart()
	n.subject.Blur()
	n.body = textarea.New()
	n.body.ShowLineNumbers = false
	n.body.Prompt = "  "
	n.body.SetStyles(textarea.Styles{Cursor: textarea.CursorStyle{Shape: tea.CursorBlock}})
	n.body.CharLimit = 4000
	n.body.SetValue(m.Text)
	n.body.Blur()
	n.resize()
	return n
}

func (n *notifyScreen) resize() {
	n.body.SetWidth(max(n.s.width-2, 20))
	n.body.SetHeight(max(min(strings.Count(n.body.Value(), "\n")+2, n.s.height-12), 3))
	n.subject.SetWidth(max(n.s.width-12, 10))
}

func (n *notifyScreen) init() tea.Cmd { return nil }

func (n *notifyScreen) update(msg tea.Msg) (screen, tea.Cmd) {
	s := n.s
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		n.resize()
	case tea.KeyPressMsg:
		k := msg.String()
		switch n.mode {
		case notifyEditSubject, notifyEditBody:
			switch k {
			case "esc":
				n.mode = notifyReview
				n.subject.Blur()
				n.body.Blur()
				return n, nil
			case "tab":
				if n.mode == notifyEditSubject {
					n.mode = notifyEditBody
					n.subject.Blur()
					return n, n.body.Focus()
				}
				n.mode = notifyEditSubject
				n.body.Blur()
				return n, n.subject.Focus()
			}
			var cmd tea.Cmd
			if n.mode == notifyEditSubject {
				if k == "enter" {
					return n, nil
				}
				n.subject, cmd = n.subject.Update(msg)
			} else {
				n.body, cmd = n.body.Update(msg)
			}
			return n, cmd
		case notifyConfirm:
			n.mode = notifyReview
			if k == "y" || k == "Y" {
				return n, tea.Sequence(pop, n.send())
			}
			return n, status("Not sent.")
		}
		switch {
		case key.Matches(msg, keyEdit):
			n.mode = notifyEditBody
			return n, n.body.Focus()
		case key.Matches(msg, keySend):
			if len(n.to) == 0 {
				return n, status("No channel takes this message: see the notify: list in the config file (drconsole config).")
			}
			if strings.TrimSpace(n.subject.Value()) == "" && strings.TrimSpace(n.body.Value()) == "" {
				return n, status("The message is empty.")
			}
			n.mode = notifyConfirm
		case n.level > 0 && key.Matches(msg, keyDecline):
			return n, tea.Sequence(s.record(checklists.Event{Type: checklists.EventEscalationAck, Level: n.level, Title: n.role, Result: "declined", Who: s.opt.Operator}),
				status(fmt.Sprintf("Escalation level %d (%s) declined; recorded.", n.level, n.role)), pop)
		}
	}
	return n, nil
}

// send starts the deliveries and returns at once with a command that reports them one by
// one. The journal's writes and the network happen in commands, never in Update.
func (n *notifyScreen) send() tea.Cmd {
	s := n.s
	m := n.draft
	m.Subject, m.Text = strings.TrimSpace(n.subject.Value()), strings.TrimSpace(n.body.Value())
	run, to, step, ctx, work := s.run, n.to, n.step, s.opt.Context, s.opt.Work
	sender := s.opt.Sender
	if sender == nil {
		sender = &notify.Sender{}
	}
	var ack *checklists.Event
	if n.level > 0 {
		how := "mailed"
		for _, c := range to {
			if c.Type == notify.TypePagerDuty {
				how = "paged"
			}
		}
		ack = &checklists.Event{Type: checklists.EventEscalationAck, Level: n.level, Title: n.role, Result: how, Who: s.opt.Operator}
	}
	// Counted in Work: the console's exit waits for the results to be journaled, so that
	// none is lost; a hang-up cancels the context, which ends the attempts at once.
	work.Add(1)
	return func() tea.Msg {
		if ack != nil {
			run.Record(*ack)
		}
		deliveries := run.Notify(ctx, sender, to, m, step)
		var once sync.Once
		return waitDelivery(deliveries, 0, 0, func() { once.Do(work.Done) })()
	}
}

// waitDelivery reads the next delivery, or reports the end once all are in.
func waitDelivery(ch <-chan notify.Delivery, sent, failed int, done func()) tea.Cmd {
	return func() tea.Msg {
		d, ok := <-ch
		if !ok {
			done()
			return notifyFinishedMsg{sent: sent, failed: failed}
		}
		if d.OK() {
			sent++
		} else {
			failed++
		}
		return notifyDeliveredMsg{d: d, next: waitDelivery(ch, sent, failed, done)}
	}
}

// notified shows one delivery on the status line, and waits for the next.
func (m Model) notified(msg notifyDeliveredMsg) (Model, tea.Cmd) {
	d := msg.d
	if d.OK() {
		m.status = fmt.Sprintf("Update delivered to %s.", d.Channel)
	} else {
		m.status = fmt.Sprintf("UPDATE NOT DELIVERED to %s: %s (journaled; the recovery goes on)", d.Channel, notify.Reason(d.Err))
	}
	if m.s.journal != nil {
		m.s.inc = m.s.journal.Incident()
	}
	return m, msg.next
}

// offerNotify puts the next offer on the status line: an escalation level due and not
// yet answered, else an update after the incident's start, a restore's start or end, a
// swap or the close. It reads only what the session holds.
func (m *Model) offerNotify() {
	s := m.s
	if s.inc == nil || len(s.opt.Notify) == 0 || m.status != "" {
		return
	}
	if _, ok := m.top().(*closeScreen); ok && !s.inc.Closed {
		m.status = "u sends the closing update first (it resolves a page), so that the report lists it."
		return
	}
	if lvl := s.escalationDue(); lvl > 0 {
		m.status = fmt.Sprintf("Escalation level %d (%s) is due: p pages or mails them.", lvl, s.opt.Runbook.Escalation[lvl-1].Role)
		return
	}
	// The restore's events are journaled by its own goroutines: read what the journal
	// holds now, without touching the session's copy the screens draw from.
	inc := s.current()
	for ; s.offeredEvents < len(inc.Events); s.offeredEvents++ {
		e := inc.Events[s.offeredEvents]
		what := ""
		switch e.Type {
		case checklists.EventIncidentStarted:
			what = "The incident is open"
			if inc.Drill {
				what = "The drill is open"
			}
		case checklists.EventRestoreStarted:
			what = "The restore started"
		case checklists.EventRestoreLoaded, checklists.EventRestoreFinished:
			what = "The restore finished: " + e.Result
		case checklists.EventSwapFinished:
			what = "The swap finished: " + e.Result
		case checklists.EventIncidentClosed:
			what = "Closed: " + e.Result
		}
		if what != "" {
			s.offeredEvents++
			m.status = what + ". u sends an update."
			return
		}
	}
}

// escalationDue is the escalation level due now that has channels to reach it and has
// not been answered, or 0. The first level is the on-call engineer, who is at the console
// or already paged by the alert that started this, so it is offered only with channels
// that name it.
func (s *session) escalationDue() int {
	inc := s.current()
	if inc == nil || inc.Closed {
		return 0
	}
	c := checklists.ClockAt(inc, s.opt.Runbook.Escalation, s.now)
	for lvl := c.Level; lvl >= 1; lvl-- {
		if inc.Acknowledged(lvl) {
			return 0 // a later level answered covers the earlier ones
		}
		role := s.opt.Runbook.Escalation[lvl-1].Role
		if len(incident.EscalationRecipients(s.opt.Notify, role, s.drill)) > 0 {
			if lvl == 1 && !namesRole(s.opt.Notify, role) {
				continue
			}
			return lvl
		}
	}
	return 0
}

func namesRole(chans []*notify.Channel, role string) bool {
	for _, c := range chans {
		for _, r := range c.Escalation {
			if strings.EqualFold(strings.TrimSpace(r), role) {
				return true
			}
		}
	}
	return false
}

// notifyKey opens the update or the escalation screen for u and p; ok is false when the
// key is not one of them or no channel is configured.
func (m Model) notifyKey(msg tea.KeyPressMsg) (tea.Cmd, bool) {
	s := m.s
	if s.run == nil || s.inc == nil {
		return nil, false
	}
	switch {
	case key.Matches(msg, keyUpdate):
		if len(s.opt.Notify) == 0 {
			return status(noChannels(s)), true
		}
		occasion := incident.OnUpdate
		if _, ok := m.top().(*closeScreen); ok {
			occasion = incident.OnClose
		}
		step := 0
		if st, ok := m.top().(*stepScreen); ok {
			step = st.n
		}
		return push(newUpdateScreen(s, step, occasion)), true
	case key.Matches(msg, keyPage):
		if len(s.opt.Notify) == 0 {
			return status(noChannels(s)), true
		}
		lvl := s.escalationDue()
		if lvl == 0 {
			c := checklists.ClockAt(s.inc, s.opt.Runbook.Escalation, s.now)
			if c.Level == 0 {
				return status("The runbook has no escalation path."), true
			}
			lvl = c.Level // paged again on purpose, or before any channel was found
		}
		return push(newEscalationScreen(s, lvl)), true
	}
	return nil, false
}

func noChannels(s *session) string {
	if s.opt.NotifyErr != nil {
		return "Notify channels: " + s.opt.NotifyErr.Error()
	}
	return "No notify channels are configured (notify: in the config file; see drconsole notify -h)."
}

func (n *notifyScreen) view(w, h int) string {
	s := n.s
	var b strings.Builder
	title := "Status update"
	if n.level > 0 {
		title = fmt.Sprintf("Escalation level %d: %s", n.level, n.role)
	}
	if s.drill {
		title += " (drill: only channels marked drills, prefixed [DRILL])"
	}
	b.WriteString(s.st.Header.Render(title) + "\n")
	var names []string
	for _, c := range n.to {
		names = append(names, c.String())
	}
	if len(names) == 0 {
		b.WriteString(s.st.Danger.Render(wrap("No channel takes this message (see drconsole config).", w)) + "\n")
	} else {
		b.WriteString(wrap("To: "+strings.Join(names, ", "), w) + "\n")
	}
	if n.mode == notifyEditSubject {
		b.WriteString("\n" + n.subject.View() + "\n")
	} else { // all of it, wrapped: what is sent is what is shown
		b.WriteString("\n" + s.st.Bold.Render(wrap("subject: "+n.subject.Value(), w)) + "\n")
	}
	if n.mode == notifyEditBody {
		b.WriteString(n.body.View() + "\n")
	} else {
		lines := strings.Split(wrap(n.body.Value(), max(w-2, 10)), "\n")
		if room := max(h-8, 3); len(lines) > room {
			lines = append(lines[:room-1], "…")
		}
		b.WriteString(indent(strings.Join(lines, "\n"), w, 2) + "\n")
	}
	switch n.mode {
	case notifyConfirm:
		b.WriteString("\n" + s.st.Warning.Render(fmt.Sprintf("Send it to %d channel(s) now? (y/n)", len(n.to))) + "\n")
	case notifyEditSubject, notifyEditBody:
		b.WriteString("\n" + s.st.Muted.Render("editing · tab: subject/text · esc: done") + "\n")
	default:
		b.WriteString("\n" + s.st.Muted.Render("Nothing is sent until you confirm.") + "\n")
	}
	return b.String()
}

func (n *notifyScreen) title() string {
	if n.level > 0 {
		return "escalate"
	}
	return "update"
}

func (n *notifyScreen) keys() []key.Binding {
	if n.mode == notifyEditSubject || n.mode == notifyEditBody {
		return []key.Binding{keyField, keyBack}
	}
	ks := []key.Binding{keySend, keyEdit}
	if n.level > 0 {
		ks = append(ks, keyDecline)
	}
	return append(ks, keyBack)
}

func (n *notifyScreen) typing() bool {
	return n.mode == notifyEditSubject || n.mode == notifyEditBody
}
func (n *notifyScreen) busy() bool { return false }
