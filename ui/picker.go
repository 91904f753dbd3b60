package ui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"drconsole/checklists"
)

// pickerScreen is the runbook's quick-reference table as a list: the operator finds
// their scenario by its symptoms and starts the incident.
type pickerScreen struct {
	s   *session
	cur cursor
}

func newPickerScreen(s *session) *pickerScreen {
	p := &pickerScreen{s: s, cur: cursor{n: len(s.opt.Runbook.Scenarios)}}
	for i, sc := range s.opt.Runbook.Scenarios { // a drill's scenario is offered first
		if sc.ID == s.opt.Scenario {
			p.cur.i = i
		}
	}
	return p
}

func (p *pickerScreen) init() tea.Cmd { return nil }

func (p *pickerScreen) update(msg tea.Msg) (screen, tea.Cmd) {
	if k, ok := msg.(tea.KeyPressMsg); ok {
		if p.cur.move(k.String()) {
			return p, nil
		}
		if k.String() == "enter" && p.cur.n > 0 {
			return p, startIncident(p.s, &p.s.opt.Runbook.Scenarios[p.cur.i])
		}
	}
	return p, nil
}

func startIncident(s *session, sc *checklists.Scenario) tea.Cmd {
	o := checklists.StartOptions{StateDir: s.opt.StateDir, Runbook: s.opt.Runbook, Scenario: sc, Drill: s.drill,
		Operator: s.opt.Operator, Host: s.opt.Host, Now: s.opt.Now}
	return func() tea.Msg {
		j, err := checklists.StartIncident(o)
		return incidentOpenedMsg{journal: j, err: err}
	}
}

func (p *pickerScreen) view(w, h int) string {
	s := p.s
	rb := s.opt.Runbook
	nameW := 8
	for _, sc := range rb.Scenarios {
		nameW = max(nameW, len(sc.Name))
	}
	row := func(name, rto, rpo, contact string) string {
		return fmt.Sprintf("%-*s  %-5s  %-5s  %s", nameW, name, rto, rpo, contact)
	}
	var b strings.Builder
	mode := "a real incident"
	if s.drill {
		mode = "a drill"
	}
	b.WriteString(s.st.Header.Render("Which scenario is this? ") + s.st.Muted.Render("(starting "+mode+")") + "\n\n")
	b.WriteString("  " + s.st.Muted.Render(row("Scenario", "RTO", "RPO", "Contact")) + "\n")
	for _, l := range s.rows(p.cur, len(rb.Scenarios), func(i int) string {
		sc := rb.Scenarios[i]
		return row(sc.Name, checklists.FormatDuration(sc.RTO), checklists.FormatDuration(sc.RPO), sc.Contact)
	}) {
		b.WriteString(l + "\n")
	}
	if p.cur.n > 0 {
		sc := rb.Scenarios[p.cur.i]
		b.WriteString("\n" + s.st.Header.Render("Symptoms of "+sc.Name) + "\n")
		for _, sym := range sc.Symptoms {
			b.WriteString("  • " + sym + "\n")
		}
		b.WriteString(s.st.Muted.Render(fmt.Sprintf("  %d steps, %s planned", len(sc.Steps), checklists.FormatDuration(sc.Planned()))) + "\n")
		if wn := sc.PlanWarning(); wn != "" {
			b.WriteString(wrap(s.st.Warning.Render("! "+wn), w) + "\n")
		}
	}
	return b.String()
}

func (p *pickerScreen) title() string { return "scenario" }
func (p *pickerScreen) keys() []key.Binding {
	return []key.Binding{keyMove, key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "start incident")), keyBack}
}
func (p *pickerScreen) typing() bool { return false }
func (p *pickerScreen) busy() bool   { return false }
