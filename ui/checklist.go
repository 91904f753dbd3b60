package ui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"drconsole/checklists"
)

// checklistScreen is the post-recovery checklist: each item ticked with time and operator.
type checklistScreen struct {
	s   *session
	cur cursor
}

var keyTick = key.NewBinding(key.WithKeys("space", "enter"), key.WithHelp("space", "tick"))

func newChecklistScreen(s *session) *checklistScreen {
	return &checklistScreen{s: s, cur: cursor{n: len(s.checklist())}}
}

// checklist is the incident's post-recovery checklist, as planned when it started.
func (s *session) checklist() []string {
	if s.inc != nil && len(s.inc.Plan.Checklist) > 0 {
		return s.inc.Plan.Checklist
	}
	return s.opt.Runbook.PostRecovery
}

func (c *checklistScreen) init() tea.Cmd { return nil }

func (c *checklistScreen) update(msg tea.Msg) (screen, tea.Cmd) {
	k, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return c, nil
	}
	if c.cur.move(k.String()) {
		return c, nil
	}
	s := c.s
	switch {
	case key.Matches(k, keyTick) && c.cur.n > 0:
		item := s.checklist()[c.cur.i]
		if s.inc != nil {
			if _, done := s.inc.Ticked(item); done {
				return c, status("Already ticked: the journal keeps who and when.")
			}
		}
		if c.cur.i < c.cur.n-1 {
			c.cur.i++
		}
		return c, s.record(checklists.Event{Type: checklists.EventChecklistTicked, Title: item, Who: s.opt.Operator})
	case key.Matches(k, keyClose):
		return c, push(newCloseScreen(s))
	}
	return c, nil
}

func (c *checklistScreen) view(w, h int) string {
	s := c.s
	items := s.checklist()
	var b strings.Builder
	ticked := 0
	for _, it := range items {
		if s.inc != nil {
			if _, ok := s.inc.Ticked(it); ok {
				ticked++
			}
		}
	}
	b.WriteString(s.st.Header.Render("Post-recovery checklist") + s.st.Muted.Render(fmt.Sprintf("  %d of %d ticked", ticked, len(items))) + "\n")
	if s.swapped != nil {
		line := "Restored database is live as " + s.swapped.Live
		if s.swapped.Kept != "" {
			line += "; previous kept as " + s.swapped.Kept
		}
		line = wrap(line, w) // the kept database's name is what a rollback needs: never cut
		b.WriteString(s.st.Success.Render(line) + "\n")
	}
	b.WriteString("\n")
	for _, l := range s.rows(c.cur, h-3-strings.Count(b.String(), "\n"), func(i int) string {
		it := items[i]
		if s.inc != nil {
			if t, ok := s.inc.Ticked(it); ok {
				who := fmt.Sprintf("  %s %s", t.Time.UTC().Format("15:04"), t.Who)
				return "[x] " + ansiCut(it, w-8-len(who)) + s.st.Muted.Render(who)
			}
		}
		return "[ ] " + it
	}) {
		b.WriteString(l + "\n")
	}
	return b.String()
}

func (c *checklistScreen) title() string { return "checklist" }
func (c *checklistScreen) keys() []key.Binding {
	return []key.Binding{keyMove, keyTick, keyClose, keyBack}
}
func (c *checklistScreen) typing() bool { return false }
func (c *checklistScreen) busy() bool   { return false }
