package ui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"drconsole/checklists"
	"drconsole/drill/inject"
)

// A drill's injects: each is shown in a banner over every screen when it falls due,
// until the team acknowledges it, and journaled. In a sandbox drill ApplyInject does
// what it names for real first.

var (
	keyInjectAck     = key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "acknowledge the inject"))
	keyInjectPage    = key.NewBinding(key.WithKeys("p"), key.WithHelp("p", "page them"))
	keyInjectDecline = key.NewBinding(key.WithKeys("n"), key.WithHelp("n", "decline the escalation"))
)

// shownInject is an inject on the screen, waiting for its acknowledgement.
type shownInject struct {
	ref     string
	n       int // its place in the file, 1-based
	in      inject.Inject
	level   int    // escalate: the level due
	applied string // what was done, once known
	failed  string
	pending bool // being applied
}

// injectAppliedMsg: ApplyInject has done an inject's apply (or failed to).
type injectAppliedMsg struct {
	ref    string
	detail string
	err    error
}

// fireInjects shows and journals the injects that have fallen due and are not yet
// journaled or being applied, and starts applying those that apply something.
func (m *Model) fireInjects() tea.Cmd {
	s := m.s
	if len(s.opt.Injects) == 0 || s.run == nil {
		return nil
	}
	inc := s.current()
	if inc == nil || inc.Closed || inc.Started.IsZero() || (s.opt.InjectScenario != "" && inc.Scenario != s.opt.InjectScenario) {
		return nil
	}
	if s.injectsOf != inc.ID { // this incident's first look: it may be a resumed one
		s.injectsOf, s.injectsFired, s.banners = inc.ID, map[string]bool{}, nil
		for _, r := range inc.Injects {
			// What fell due before is not journaled or applied again; what the team had
			// not acknowledged is shown again.
			s.injectsFired[r.Ref] = true
			if r.Acked.IsZero() {
				n := 0
				fmt.Sscanf(r.Ref, "inject-%d", &n)
				b := shownInject{ref: r.Ref, n: n, level: r.Level, applied: r.Applied, failed: r.Error,
					in: inject.Inject{Step: r.Step, Event: r.Event, Detail: r.Detail, Apply: r.Apply}}
				if n >= 1 && n <= len(s.opt.Injects) {
					b.in.At = s.opt.Injects[n-1].At
				}
				s.banners = append(s.banners, b)
			}
		}
	}
	elapsed := s.now.Sub(inc.Started)
	started := func(n int) bool { return n <= len(inc.Steps) && !inc.Steps[n-1].Started.IsZero() }
	var cmds []tea.Cmd
	for i, in := range s.opt.Injects {
		ref := fmt.Sprintf("inject-%d", i+1)
		if s.injectsFired[ref] || !in.Due(elapsed, started) {
			continue
		}
		s.injectsFired[ref] = true
		b := shownInject{ref: ref, n: i + 1, in: in}
		if in.Apply == inject.Escalate {
			b.level = s.nextEscalation(inc)
		}
		if s.opt.ApplyInject != nil && in.Apply != "" && in.Apply != inject.Escalate {
			b.pending = true
			apply, ctx, what, work := s.opt.ApplyInject, s.opt.Context, in.Apply, s.opt.Work
			work.Add(1) // the console waits for it before it exits: the sandbox is not removed under it
			cmds = append(cmds, func() tea.Msg {
				defer work.Done()
				detail, err := apply(ctx, what)
				return injectAppliedMsg{ref: ref, detail: detail, err: err}
			})
		} else {
			cmds = append(cmds, s.record(injectEvent(b, checklists.ResultShown, "", "")))
		}
		s.banners = append(s.banners, b)
	}
	return tea.Batch(cmds...)
}

// injectApplied journals an applied inject and shows what was done.
func (m *Model) injectApplied(msg injectAppliedMsg) tea.Cmd {
	s := m.s
	for i := range s.banners {
		b := &s.banners[i]
		if b.ref != msg.ref {
			continue
		}
		b.pending = false
		if msg.err != nil {
			b.failed = msg.err.Error()
			return s.record(injectEvent(*b, checklists.ResultFailed, msg.err.Error(), ""))
		}
		b.applied = msg.detail
		return s.record(injectEvent(*b, checklists.ResultApplied, "", msg.detail))
	}
	return nil
}

func injectEvent(b shownInject, result, errText, detail string) checklists.Event {
	return checklists.Event{Type: checklists.EventInject, Ref: b.ref, Title: b.in.Event, Note: b.in.Detail, Step: b.in.Step,
		Kind: b.in.Apply, Level: b.level, Result: result, Error: errText, Detail: detail}
}

// nextEscalation is the level an escalate inject makes due: the first one past the
// on-call engineer (who is at the console) not yet answered, or the last.
func (s *session) nextEscalation(inc *checklists.Incident) int {
	n := len(s.opt.Runbook.Escalation)
	for lvl := min(2, n); lvl <= n; lvl++ {
		if !inc.Acknowledged(lvl) {
			return lvl
		}
	}
	return n
}

// injectKey handles a key while an inject is on the screen: it has the keys until it is
// acknowledged (ctrl+c still quits).
func (m Model) injectKey(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	s := m.s
	b := s.banners[0]
	if b.pending {
		return m, nil // what it applies is being done: the team sees the outcome first
	}
	ack := func(extra ...checklists.Event) tea.Cmd {
		s.banners = s.banners[1:]
		return s.record(append([]checklists.Event{{Type: checklists.EventInjectAck, Ref: b.ref, Who: s.opt.Operator}}, extra...)...)
	}
	switch {
	case key.Matches(msg, keyInjectAck):
		return m, ack()
	case b.level > 0 && key.Matches(msg, keyInjectPage):
		if len(s.opt.Notify) > 0 { // the real page, from the screen that sends it and journals its answer
			return m, tea.Batch(ack(), push(newEscalationScreen(s, b.level)))
		}
		role := s.opt.Runbook.Escalation[b.level-1].Role
		return m, ack(checklists.Event{Type: checklists.EventEscalationAck, Level: b.level, Title: role, Result: "paged", Who: s.opt.Operator,
			Note: "in the drill, without a notify channel: nothing was sent"})
	case b.level > 0 && key.Matches(msg, keyInjectDecline):
		role := s.opt.Runbook.Escalation[b.level-1].Role
		return m, ack(checklists.Event{Type: checklists.EventEscalationAck, Level: b.level, Title: role, Result: "declined", Who: s.opt.Operator})
	}
	return m, nil
}

func (s *session) injectKeys() []key.Binding {
	if len(s.banners) == 0 || s.banners[0].pending {
		return nil
	}
	if s.banners[0].level > 0 {
		return []key.Binding{keyInjectPage, keyInjectDecline, keyInjectAck}
	}
	return []key.Binding{keyInjectAck}
}

// banner draws the first inject waiting, w columns wide.
func (s *session) banner(w int) []string {
	b := s.banners[0]
	inner := max(w-4, 10) // the border and the padding
	head := fmt.Sprintf("INJECT %d · %s", b.n, b.in.When())
	if more := len(s.banners) - 1; more > 0 {
		head += fmt.Sprintf(" · %d more waiting", more)
	}
	lines := []string{s.st.Warning.Render(head), s.st.Bold.Render(wrap(b.in.Event, inner))}
	if b.in.Detail != "" {
		lines = append(lines, wrap(b.in.Detail, inner))
	}
	switch {
	case b.pending:
		lines = append(lines, s.st.Muted.Render("applying "+b.in.Apply+" to the sandbox…"))
	case b.failed != "":
		lines = append(lines, s.st.Danger.Render(wrap(b.in.Apply+" could not be applied: "+b.failed, inner)))
	case b.applied != "":
		lines = append(lines, s.st.Muted.Render(wrap("In the sandbox: "+b.applied, inner)))
	case s.opt.ApplyInject == nil && b.in.Apply != "" && b.in.Apply != inject.Escalate:
		lines = append(lines, s.st.Muted.Render(wrap("A tabletop: nothing is done to anything; talk it through.", inner)))
	}
	if b.level > 0 {
		role := s.opt.Runbook.Escalation[b.level-1].Role
		lines = append(lines, wrap(fmt.Sprintf("Escalation level %d (%s) is due: p pages them, n declines (both journaled), enter acknowledges only.", b.level, role), inner))
	} else if !b.pending {
		lines = append(lines, s.st.Muted.Render("enter acknowledges it (journaled)"))
	}
	box := s.st.Banner.Width(w).Render(strings.Join(lines, "\n"))
	return strings.Split(box, "\n")
}

// overlay draws the banner over the top of the body's lines.
func (s *session) overlay(body []string, w int) []string {
	if len(s.banners) == 0 {
		return body
	}
	box := s.banner(w)
	for i := 0; i < len(box) && i < len(body); i++ {
		body[i] = fitLine(box[i], w)
	}
	return body
}
