package ui

import (
	"fmt"
	"os"
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/viewport"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"drconsole/checklists"
	"drconsole/storage"
)

// closeScreen sums the incident up, closes it with an outcome and writes the report
// beside the journal.
type closeScreen struct {
	s        *session
	outcomes []string
	pick     int
	confirm  bool
	working  bool
	path     string
	err      error
	// A sandbox drill's scored report, shown once it is closed: scoring (running),
	// score (its lines, scrolled) or scoreErr.
	scoring  bool
	score    viewport.Model
	scored   bool
	scoreErr error
	card     Scored
}

// Scored is a closed drill's scored report, as its close screen shows it.
type Scored struct {
	Text string // the scorecard, in lines of a label and a value
	// Report is where the drill's report is kept for good (the state directory's
	// drills/); "" when it could not be. A sandbox's own report goes with the sandbox.
	Report string
}

type incidentClosedMsg struct {
	path string
	err  error
}

// scoredMsg is a drill's scored report.
type scoredMsg struct {
	card Scored
	err  error
}

var (
	keyOutcome = key.NewBinding(key.WithKeys("left", "right", "tab"), key.WithHelp("←/→", "outcome"))
	keyCloseIt = key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "close and write report"))
)

func newCloseScreen(s *session) *closeScreen {
	c := &closeScreen{s: s, outcomes: []string{"recovered", "abandoned", "escalated"}}
	if s.drill {
		c.outcomes = []string{"drill complete", "drill abandoned"}
	} else if s.swapped == nil {
		c.pick = 1
	}
	return c
}

func (c *closeScreen) init() tea.Cmd { return nil }

// ReportPath is where the console writes an incident's report: beside its journal.
func ReportPath(journalPath string) string {
	return strings.TrimSuffix(journalPath, ".jsonl") + ".report.md"
}

func (c *closeScreen) update(msg tea.Msg) (screen, tea.Cmd) {
	s := c.s
	switch msg := msg.(type) {
	case incidentClosedMsg:
		c.working, c.path, c.err = false, msg.path, msg.err
		s.inc = s.journal.Incident() // closed even when the report could not be written
		if s.opt.Score != nil && s.inc.Closed && !c.scoring && !c.scored {
			c.scoring = true
			score := s.opt.Score
			return c, func() tea.Msg { card, err := score(); return scoredMsg{card, err} }
		}
	case scoredMsg:
		c.scoring, c.scored, c.scoreErr = false, true, msg.err
		c.score = viewport.New(viewport.WithWidth(max(s.width, 20)))
		c.card = msg.card
	case tea.KeyPressMsg:
		if c.scored {
			var cmd tea.Cmd
			c.score, cmd = c.score.Update(msg)
			return c, cmd
		}
		if c.path != "" || c.working {
			return c, nil
		}
		k := msg.String()
		if c.confirm {
			c.confirm = false
			if k == "y" || k == "Y" {
				c.working = true
				j, outcome, now := s.journal, c.outcomes[c.pick], s.opt.Now
				return c, func() tea.Msg {
					if !j.Incident().Closed { // closed already when only the report failed last time
						if err := j.CloseIncident(outcome, ""); err != nil {
							return incidentClosedMsg{err: err}
						}
					}
					md := checklists.BuildReport(j.Incident(), nil, now()).Markdown()
					path := ReportPath(j.Path())
					if err := os.WriteFile(path, []byte(md), 0o600); err != nil {
						return incidentClosedMsg{err: fmt.Errorf("write report: %w", err)}
					}
					return incidentClosedMsg{path: path}
				}
			}
			return c, nil
		}
		switch k {
		case "left", "shift+tab":
			c.pick = (c.pick + len(c.outcomes) - 1) % len(c.outcomes)
		case "right", "tab":
			c.pick = (c.pick + 1) % len(c.outcomes)
		case "enter":
			c.confirm = true
		}
	}
	return c, nil
}

func (c *closeScreen) view(w, h int) string {
	s := c.s
	inc := s.inc
	var b strings.Builder
	b.WriteString(s.st.Header.Render("Close the incident") + "\n\n")
	clk := checklists.ClockAt(inc, s.opt.Runbook.Escalation, s.now)
	// Wrapped, never cut: the kept database's name, a restore's error are what people act on.
	kv := func(k, v string) {
		b.WriteString(s.st.Muted.Render(fmt.Sprintf("%-12s", k)) + strings.TrimPrefix(indent(v, w, 12), strings.Repeat(" ", 12)) + "\n")
	}
	kind := "incident"
	if inc.Drill {
		kind = "drill"
	}
	kv("Incident", fmt.Sprintf("%s %s: %s", kind, inc.ID, inc.ScenarioName))
	rto := "within the RTO"
	if clk.OverRTO {
		rto = "OVER the RTO"
	}
	kv("Time", fmt.Sprintf("%s of %s (%s)", clockText(clk.Elapsed), checklists.FormatDuration(clk.RTO), rto))
	var done, skipped, open int
	for _, st := range inc.Steps {
		switch st.Status {
		case checklists.StepDone:
			done++
		case checklists.StepSkipped:
			skipped++
		default:
			open++
		}
	}
	kv("Steps", fmt.Sprintf("%d done, %d skipped, %d not done", done, skipped, open))
	if inc.Backup != nil {
		kv("Backup", storage.Printable(inc.Backup.Name)+" ("+inc.Backup.Location+")")
	}
	if r := inc.Restore(); r != nil {
		res := r.State()
		if r.Detail != "" {
			res += ": " + r.Detail
		}
		if r.Error != "" && r.State() != checklists.ResultOK {
			res += " (" + r.Error + ")"
		}
		kv("Restore", res)
	}
	pass, fail := 0, 0
	latest := inc.LatestChecks()
	for _, ch := range latest {
		switch ch.Result {
		case checklists.CheckFail:
			fail++
		case checklists.CheckPass:
			pass++
		}
	}
	kv("Checks", fmt.Sprintf("%d checks, as last run: %d passed, %d failed", len(latest), pass, fail))
	ticked := 0
	for _, it := range s.checklist() {
		if _, ok := inc.Ticked(it); ok {
			ticked++
		}
	}
	kv("Checklist", fmt.Sprintf("%d of %d ticked", ticked, len(s.checklist())))
	b.WriteString("\n")
	if c.scoring || c.scored {
		return c.scoreView(w, h)
	}
	if c.path != "" {
		b.WriteString(s.st.Success.Render("Closed as "+c.outcomes[c.pick]+".") + "\n")
		b.WriteString(wrap("Report written to "+c.path, w) + "\n")
		b.WriteString(s.st.Muted.Render(wrap("Journal: "+s.journal.Path(), w)) + "\n")
		b.WriteString(s.st.Muted.Render("drconsole report "+inc.ID+" prints it again.") + "\n\n")
		b.WriteString("q quits.\n")
		return b.String()
	}
	if c.err != nil {
		b.WriteString(s.st.Danger.Render(wrap(c.err.Error(), w)) + "\n")
	}
	b.WriteString("Outcome: ")
	for i, o := range c.outcomes {
		if i == c.pick {
			b.WriteString(s.st.Selected.Render("["+o+"]") + " ")
		} else {
			b.WriteString(" " + o + "  ")
		}
	}
	b.WriteString("\n")
	if open > 0 || ticked < len(s.checklist()) {
		b.WriteString(s.st.Warning.Render("Steps or checklist items are still open; they will show as such in the report.") + "\n")
	}
	if c.confirm {
		b.WriteString(s.st.Danger.Render("Close the incident as "+c.outcomes[c.pick]+"? This cannot be reopened. (y/n)") + "\n")
	}
	return b.String()
}

// scoreView is a closed drill's scored report: the report's path, then the scorecard,
// scrolled when it is longer than the screen.
func (c *closeScreen) scoreView(w, h int) string {
	s := c.s
	var b strings.Builder
	b.WriteString(s.st.Header.Render("Drill closed as "+c.outcomes[c.pick]+": the scored report") + "\n")
	// The report that lasts: a sandbox's own, beside its journal, goes with the sandbox.
	report := c.card.Report
	switch {
	case report != "":
	case c.scoring:
		report = "being kept with the scorecard…"
	case s.opt.Sandbox:
		report = c.path + " (in the sandbox: it goes when the drill ends)"
	default:
		report = c.path
	}
	// Under a label as wide as the scorecard's, so that its path and the scorecard's line up.
	b.WriteString(s.st.Muted.Render("report    "+strings.TrimPrefix(indentAtSpaces(report, w, 10), strings.Repeat(" ", 10))) + "\n")
	switch {
	case c.scoring:
		b.WriteString("\nScoring: reading the sandbox's database…\n")
		return b.String()
	case c.scoreErr != nil:
		b.WriteString("\n" + s.st.Danger.Render(wrap("The drill could not be scored: "+c.scoreErr.Error(), w)) + "\n\nq quits.\n")
		return b.String()
	}
	top := strings.Count(b.String(), "\n")
	// Each line wrapped at spaces under its label (the first 10 columns), and a path after
	// its slashes: never cut, never broken inside a name.
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(c.card.Text, "\n"), "\n") {
		if ansi.StringWidth(l) <= w || len(l) < 10 {
			lines = append(lines, l)
			continue
		}
		lines = append(lines, l[:10]+strings.TrimPrefix(indentAtSpaces(l[10:], w, 10), strings.Repeat(" ", 10)))
	}
	c.score.SetContent(strings.Join(lines, "\n"))
	c.score.SetWidth(w)
	c.score.SetHeight(max(h-top-1, 3))
	b.WriteString(c.score.View() + "\n")
	more := "q quits: the scorecard is printed again"
	if !c.score.AtBottom() || !c.score.AtTop() {
		more = fmt.Sprintf("↑/↓ scroll (%d%%) · ", int(c.score.ScrollPercent()*100)) + more
	}
	b.WriteString(s.st.Muted.Render(more))
	return b.String()
}

func (c *closeScreen) title() string { return "close" }
func (c *closeScreen) keys() []key.Binding {
	if c.path != "" {
		return nil
	}
	return []key.Binding{keyOutcome, keyCloseIt, keyBack}
}
func (c *closeScreen) typing() bool { return false }
func (c *closeScreen) busy() bool   { return false }
