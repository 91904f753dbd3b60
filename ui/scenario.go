package ui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"drconsole/checklists"
)

// scenarioScreen is the incident's home: the steps with budgets and state, the clock
// against the RTO, who to escalate to now, and the contacts.
type scenarioScreen struct {
	s   *session
	cur cursor
}

var (
	keyOpenStep  = key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "open step"))
	keyChecklist = key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "checklist"))
	keyClose     = key.NewBinding(key.WithKeys("x"), key.WithHelp("x", "close incident"))
)

func newScenarioScreen(s *session) *scenarioScreen {
	sc := &scenarioScreen{s: s, cur: cursor{n: len(s.scenario.Steps)}}
	// Start on the first step not finished.
	if s.inc != nil {
		for i, st := range s.inc.Steps {
			if st.Status != checklists.StepDone && st.Status != checklists.StepSkipped {
				sc.cur.i = i
				break
			}
		}
	}
	return sc
}

func (sc *scenarioScreen) init() tea.Cmd { return nil }

func (sc *scenarioScreen) update(msg tea.Msg) (screen, tea.Cmd) {
	k, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return sc, nil
	}
	if sc.cur.move(k.String()) {
		return sc, nil
	}
	switch {
	case key.Matches(k, keyOpenStep) && sc.cur.n > 0:
		n := sc.cur.i + 1
		var rec tea.Cmd
		if st := sc.s.stepRecord(n); st != nil && st.Status == checklists.StepPending {
			rec = sc.s.record(checklists.Event{Type: checklists.EventStepStarted, Step: n, Title: st.Title})
		}
		return sc, tea.Sequence(rec, push(newStepScreen(sc.s, n)))
	case key.Matches(k, keyChecklist):
		return sc, push(newChecklistScreen(sc.s))
	case key.Matches(k, keyClose):
		return sc, push(newCloseScreen(sc.s))
	}
	return sc, nil
}

// stepRecord is the journal's record of step n (1-based), or nil.
func (s *session) stepRecord(n int) *checklists.StepRecord {
	if s.inc == nil || n < 1 || n > len(s.inc.Steps) {
		return nil
	}
	return &s.inc.Steps[n-1]
}

// stepState is a step's state in words, with how long it took or has left.
func (s *session) stepState(c checklists.StepClock) (string, func(...string) string) {
	st := s.st
	switch c.Status {
	case checklists.StepDone:
		return "done " + checklists.FormatDuration(c.Elapsed.Truncate(60e9)), st.Success.Render
	case checklists.StepSkipped:
		return "skipped", st.Muted.Render
	case checklists.StepRunning, checklists.StepPaused:
		word := "active"
		if c.Status == checklists.StepPaused {
			word = "paused"
		}
		if c.Over {
			return fmt.Sprintf("OVER BUDGET %s", checklists.FormatDuration(c.Elapsed.Truncate(60e9))), st.Danger.Render
		}
		if c.Budget > 0 {
			return fmt.Sprintf("%s, %s left", word, checklists.FormatDuration(c.Remaining.Truncate(60e9))), st.Accent.Render
		}
		return word, st.Accent.Render
	}
	return "pending", st.Muted.Render
}

func (sc *scenarioScreen) view(w, h int) string {
	s := sc.s
	scen := s.scenario
	var b strings.Builder
	c := checklists.ClockAt(s.inc, s.opt.Runbook.Escalation, s.now)
	extra := 0
	// The incident's id goes on a line of its own when the name and targets leave it too
	// little room (a drill's ids are long): cut, it could not be read or copied.
	head := fmt.Sprintf("  RTO %s · RPO %s", checklists.FormatDuration(scen.RTO), checklists.FormatDuration(scen.RPO))
	if ansi.StringWidth(scen.Name+head+" · "+s.inc.ID) <= w {
		b.WriteString(s.st.Header.Render(scen.Name) + s.st.Muted.Render(head+" · "+s.inc.ID) + "\n")
	} else {
		b.WriteString(s.st.Header.Render(scen.Name) + s.st.Muted.Render(head) + "\n" + s.st.Muted.Render(s.inc.ID) + "\n")
		extra++
	}
	left := fmt.Sprintf("Clock %s elapsed, %s left of the RTO", clockText(c.Elapsed), clockText(c.RTORemaining))
	if c.OverRTO {
		b.WriteString(s.st.Danger.Render(fmt.Sprintf("Clock %s elapsed: %s OVER the RTO", clockText(c.Elapsed), clockText(-c.RTORemaining))) + "\n")
	} else {
		b.WriteString(left + "\n")
	}
	esc := fmt.Sprintf("Escalation level %d now: %s", c.Level, contactOf(s.opt.Runbook, c.Escalation.Role))
	if c.Next != nil {
		next := fmt.Sprintf(" · then %s in %s", c.Next.Role, checklists.FormatDuration(c.NextIn.Truncate(60e9)))
		if len([]rune(esc+next)) > w {
			esc += "\n " + next[3:]
			extra++
		} else {
			esc += next
		}
	}
	b.WriteString(s.st.Warning.Render(esc) + "\n")
	b.WriteString("Contact: " + contactOf(s.opt.Runbook, scen.Contact) + "\n")
	if wn := scen.PlanWarning(); wn != "" {
		ws := wrap("! "+wn, w)
		extra += strings.Count(ws, "\n") + 1
		b.WriteString(s.st.Warning.Render(ws) + "\n")
	}
	b.WriteString("\n")
	// An untimed step's words go in the budget column when they fit it ("Immediate");
	// longer ones ("When primary region recovers") would push the row past the screen's
	// edge and have its state cut, so they are said under the list.
	budgets := make([]string, len(scen.Steps))
	budgetW := len("Budget  ")
	var notes []string
	for i, st := range scen.Steps {
		switch {
		case st.Budget > 0:
			budgets[i] = checklists.FormatDuration(st.Budget)
		case len([]rune(st.Timing)) <= maxBudgetW:
			budgets[i] = st.Timing
		default:
			budgets[i] = "untimed"
			notes = append(notes, fmt.Sprintf("%d. untimed: %s", i+1, st.Timing))
		}
		budgetW = max(budgetW, len([]rune(budgets[i])))
	}
	var foot strings.Builder
	for _, n := range notes {
		foot.WriteString(s.st.Muted.Render(indent(n, w, 2)) + "\n")
	}
	if len(notes) > 0 {
		extra += strings.Count(foot.String(), "\n") + 1 // and the blank line above them
	}
	titleW := max(w-2-4-budgetW-24, 20)
	b.WriteString("  " + s.st.Muted.Render(fmt.Sprintf("%-4s%-*s%*s  %s", "#", titleW, "Step", budgetW, "Budget", "State")) + "\n")
	for _, l := range s.rows(sc.cur, h-7-extra, func(i int) string {
		st := scen.Steps[i]
		state, paint := "pending", s.st.Muted.Render
		if i < len(c.Steps) {
			state, paint = s.stepState(c.Steps[i])
		}
		title := st.Title
		if len([]rune(title)) > titleW-1 {
			title = string([]rune(title)[:titleW-2]) + "…"
		}
		return fmt.Sprintf("%-4s%-*s%*s  ", fmt.Sprintf("%d.", i+1), titleW, title, budgetW, budgets[i]) + paint(state)
	}) {
		b.WriteString(l + "\n")
	}
	if len(notes) > 0 {
		b.WriteString("\n" + foot.String())
	}
	return b.String()
}

// maxBudgetW is the widest an untimed step's words may be in the budget column.
const maxBudgetW = len("Immediate")

func (sc *scenarioScreen) title() string {
	return "scenario"
}
func (sc *scenarioScreen) keys() []key.Binding {
	return []key.Binding{keyMove, keyOpenStep, keyChecklist, keyClose}
}
func (sc *scenarioScreen) typing() bool { return false }
func (sc *scenarioScreen) busy() bool   { return false }
