package ui

import (
	"errors"
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"

	"drconsole/checklists"
	"drconsole/incident"
	"drconsole/recovery"
)

// checksScreen shows each integrity check with expected and actual values. After a
// restore the scratch database is still beside the live one until the operator swaps it
// in or abandons it; from a checks step alone it checks the live database.
type checksScreen struct {
	s        *session
	step     int
	att      *incident.Attempt  // the restore attempt whose copy this is; nil: live checks
	restored *recovery.Restored // what the restore returned (its figures and checks); nil: live checks
	err      error              // the restore's error (checks failed)
	results  []recovery.CheckResult
	loaded   bool
	confirm  string          // "swap", "abandon" or ""
	field    textinput.Model // swap: the operator types the target's name (DESIGN §3)
	working  bool
	done     string // what happened: swapped, abandoned
	workErr  error
	scroll   int
	rows     *rowsTable // each table's rows after a restore; nil: none counted (plain SQL, live checks)
}

type (
	liveChecksMsg struct{ results []recovery.CheckResult }
	swappedMsg    struct {
		swapped *recovery.Swapped
		err     error
	}
	abandonedMsg struct{ err error }
)

var (
	keySwap    = key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "swap in"))
	keyAbandon = key.NewBinding(key.WithKeys("a"), key.WithHelp("a", "abandon"))
	keyNext    = key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "continue"))
)

func newChecksScreen(s *session, step int, att *incident.Attempt, err error) *checksScreen {
	c := &checksScreen{s: s, step: step, att: att, err: err, loaded: true}
	if att != nil {
		c.restored = att.Last()
	}
	if c.restored != nil {
		c.results = c.restored.Checks
		if len(c.restored.Rows) > 0 {
			t := newRowsTable(c.restored.Rows, s.width)
			c.rows = &t
		}
	}
	return c
}

func newLiveChecksScreen(s *session, step int) *checksScreen {
	return &checksScreen{s: s, step: step}
}

// checksStep is the scenario's checks step, where results are journaled; else step.
func (c *checksScreen) checksStep() int {
	for i, st := range c.s.scenario.Steps {
		if st.Kind == checklists.KindChecks {
			return i + 1
		}
	}
	return c.step
}

func (c *checksScreen) init() tea.Cmd {
	s := c.s
	if !c.loaded {
		if s.opt.Conn == nil || s.opt.Conn.Database == "" {
			c.loaded, c.workErr = true, errors.New("no target database named (DB_NAME, --db-url or PGDATABASE): nothing to check")
			return nil
		}
		ctx, conn, app := s.opt.Context, s.opt.Conn, incident.Checks(s.opt.Runbook)
		return func() tea.Msg { return liveChecksMsg{recovery.RunChecks(ctx, conn, conn.Database, "", app)} }
	}
	// A restore's checks were journaled by its attempt.
	return func() tea.Msg { return journaledMsg{} }
}

// waiting reports whether the restored copy is still beside the live database, to be
// swapped in or abandoned.
func (c *checksScreen) waiting() bool {
	return c.att != nil && c.err == nil && c.done == ""
}

func (c *checksScreen) canSwap() bool {
	r := c.restored
	return c.waiting() && r != nil && (!c.s.drill || c.s.opt.Sandbox) && r.Plan.Mode != recovery.ModeTest && len(recovery.Failed(r.Checks)) == 0
}

func (c *checksScreen) update(msg tea.Msg) (screen, tea.Cmd) {
	s := c.s
	switch msg := msg.(type) {
	case liveChecksMsg:
		c.loaded, c.results = true, msg.results
		return c, s.record(incident.CheckEvents(c.checksStep(), msg.results)...)
	case swappedMsg: // the command has journaled the outcome
		c.working, s.cancelWork = false, nil
		refresh := func() tea.Msg { return journaledMsg{} }
		if msg.err != nil {
			c.workErr = msg.err
			return c, refresh
		}
		c.done, s.swapped, s.attempt = "swapped", msg.swapped, nil
		return c, tea.Sequence(refresh, func() tea.Msg { return replaceMsg{newChecklistScreen(s)} })
	case abandonedMsg: // the command has journaled the outcome
		c.working, s.cancelWork = false, nil
		if msg.err != nil {
			c.workErr = msg.err
			return c, nil
		}
		c.done, s.attempt = "abandoned", nil
		return c, func() tea.Msg { return journaledMsg{} }
	case tea.WindowSizeMsg:
		if c.rows != nil {
			c.rows.resize(msg.Width)
		}
	case tea.KeyPressMsg:
		k := msg.String()
		if c.confirm == "swap" {
			switch k {
			case "esc":
				c.confirm = ""
				return c, nil
			case "enter":
				target := c.restored.Plan.Target
				if strings.TrimSpace(c.field.Value()) != target {
					return c, status(fmt.Sprintf("That is not %q: type the database name exactly to swap, or esc.", target))
				}
				c.confirm = ""
				return c, c.work("swap")
			}
			var cmd tea.Cmd
			c.field, cmd = c.field.Update(msg)
			return c, cmd
		}
		if c.confirm != "" {
			what := c.confirm
			c.confirm = ""
			if k == "y" || k == "Y" {
				return c, c.work(what)
			}
			return c, nil
		}
		switch {
		case k == "down" || k == "j":
			c.scroll = min(c.scroll+1, max(len(c.results)-1, 0))
		case k == "up" || k == "k":
			c.scroll = max(c.scroll-1, 0)
		case key.Matches(msg, keyRows) && c.rows != nil:
			// The page is the list's height on this screen; the body is the screen but for
			// the header, the status line and the keys.
			_, _, rowsH := c.layout(s.width, s.height-4)
			c.rows.scroll(k, rowsH-rowsSection-1)
		case key.Matches(msg, keySwap) && c.canSwap() && !c.working:
			c.confirm = "swap"
			c.field = newField(s, "type "+c.restored.Plan.Target+" to swap: ", false)
			return c, c.field.Focus()
		case key.Matches(msg, keyAbandon) && c.waiting() && !c.working:
			c.confirm = "abandon"
		case key.Matches(msg, keyNext) && !c.working:
			if !c.waiting() {
				var rec tea.Cmd
				if c.restored == nil && c.err == nil && c.loaded && c.workErr == nil {
					rec = s.record(c.finishSteps("checks run")...)
				}
				return c, tea.Sequence(rec, goHome)
			}
		}
	}
	return c, nil
}

// finishSteps marks the restore and checks steps done, where not already.
func (c *checksScreen) finishSteps(note string) []checklists.Event {
	var evs []checklists.Event
	for i, st := range c.s.scenario.Steps {
		n := i + 1
		if n != c.step && st.Kind != checklists.KindChecks {
			continue
		}
		if r := c.s.stepRecord(n); r != nil && (r.Status == checklists.StepDone || r.Status == checklists.StepSkipped) {
			continue
		}
		if r := c.s.stepRecord(n); r != nil && r.Status == checklists.StepPending {
			evs = append(evs, checklists.Event{Type: checklists.EventStepStarted, Step: n, Title: st.Title})
		}
		evs = append(evs, checklists.Event{Type: checklists.EventStepDone, Step: n, Title: st.Title, Note: note, Who: c.s.opt.Operator})
	}
	return evs
}

// work swaps in or abandons the restored copy. The command owns the copy while it runs
// (dropScratch leaves it alone), is counted in Work, and the attempt journals its
// outcome, so a quit or hang-up that ends the program before its message arrives loses
// nothing.
func (c *checksScreen) work(what string) tea.Cmd {
	s := c.s
	att := c.att
	if owned := s.takeScratch(); owned != nil && owned != att {
		s.keepScratch(owned) // not ours: leave it where it was
	}
	ctx, done := s.startWork()
	c.working = true
	run := s.run
	if what == "swap" {
		finish := c.finishSteps("restored, checked and swapped in")
		accept := len(recovery.Unconfirmed(c.results)) > 0 // the operator was shown what is missing and said yes
		return func() tea.Msg {
			defer done()
			sw, err := att.Swap(ctx, nil, accept)
			if err != nil {
				if !att.Finished() {
					s.keepScratch(att) // still beside the live one: dropped on leaving
				}
				return swappedMsg{nil, err}
			}
			run.Record(finish...)
			return swappedMsg{sw, nil}
		}
	}
	return func() tea.Msg {
		defer done()
		return abandonedMsg{att.Abandon(ctx, "abandoned by "+s.opt.Operator+" in the console")}
	}
}

func (c *checksScreen) view(w, h int) string {
	top, checks, rowsH := c.layout(w, h)
	if c.rows == nil || !c.loaded {
		return top + checks
	}
	return top + checks + c.rows.view(c.s.st, w, rowsH) + "\n"
}

// layout is the screen's parts for a body w×h: what goes above the checks (the title, the
// state, the question being asked), the checks from the one scrolled to, as many as fit,
// and the height left for the rows of every table. The checks come first; the rows keep
// at least a few lines, the ones that differ first.
func (c *checksScreen) layout(w, h int) (top, checks string, rowsH int) {
	s := c.s
	var b strings.Builder
	if c.restored != nil {
		b.WriteString(s.st.Header.Render("Integrity checks of "+c.restored.Plan.Scratch) + "\n")
		b.WriteString(s.st.Muted.Render(fmt.Sprintf("restored %s in %s, %d tables; compared with %s", bytesText(c.restored.Read), checklists.FormatDuration(c.restored.Duration.Round(1e9)), c.restored.Tables, c.restored.Plan.Target)) + "\n\n")
	} else {
		b.WriteString(s.st.Header.Render("Integrity checks") + "\n\n")
	}
	if !c.loaded {
		b.WriteString(s.st.Muted.Render("Running the checks…") + "\n")
		return b.String(), "", 0
	}
	switch {
	case c.workErr != nil:
		b.WriteString(s.st.Danger.Render(wrap("✗ "+c.workErr.Error(), w)) + "\n")
	case c.err != nil:
		b.WriteString(s.st.Danger.Render(wrap("✗ "+c.err.Error(), w)) + "\n" + wrap(advice(c.err), w) + "\n")
	case c.working:
		b.WriteString(s.st.Accent.Render("Working…") + "\n")
	case c.confirm == "swap" && len(recovery.Unconfirmed(c.results)) > 0:
		m := recovery.Unconfirmed(c.results)[0]
		b.WriteString(s.st.Danger.Render(wrap(fmt.Sprintf("%s. Swap %s in as %s ANYWAY? The current %s is kept as %s.", m.Detail, c.restored.Plan.Scratch, c.restored.Plan.Target, c.restored.Plan.Target, c.restored.Plan.Kept), w)) + "\n")
		b.WriteString(c.field.View() + "\n")
	case c.confirm == "swap":
		b.WriteString(s.st.Danger.Render(wrap(fmt.Sprintf("Swap %s in as %s? The current %s is kept as %s.", c.restored.Plan.Scratch, c.restored.Plan.Target, c.restored.Plan.Target, c.restored.Plan.Kept), w)) + "\n")
		b.WriteString(c.field.View() + "\n")
	case c.confirm == "abandon":
		b.WriteString(s.st.Danger.Render("Abandon this restore and drop "+c.restored.Plan.Scratch+"? (y/n)") + "\n")
	case c.done == "abandoned":
		b.WriteString(s.st.Muted.Render("Abandoned: the scratch database was dropped; the live database is untouched.") + "\n")
	case c.canSwap() && len(recovery.Unconfirmed(c.results)) > 0:
		b.WriteString(s.st.Warning.Render(wrap("The copy lacks tables the live database has (see HOLD below): s swaps it in only after you confirm; a abandons it.", w)) + "\n")
	case c.canSwap():
		b.WriteString(s.st.Success.Render("All blocking checks passed:") + " s swaps it in, a abandons it.\n")
	case c.restored != nil && s.drill && !s.opt.Sandbox:
		b.WriteString(s.st.Drill.Render(" DRILL ") + " nothing is swapped: a drops the scratch database.\n")
	case c.restored != nil:
		b.WriteString(s.st.Danger.Render("Blocking checks failed: this copy cannot be swapped in.") + " a abandons it.\n")
	}
	b.WriteString("\n")
	top = b.String()

	nameW, valW := checkColumns(c.results, w)
	var blocks [][]string // each check's lines
	want := 1             // the column header
	for _, r := range c.results[min(c.scroll, len(c.results)):] {
		mark := s.st.Success.Render("pass  ")
		switch {
		case r.Status == recovery.CheckFail && r.Confirm:
			mark = s.st.Warning.Render("HOLD  ")
		case r.Status == recovery.CheckFail:
			mark = s.st.Danger.Render("FAIL  ")
		case r.Status == recovery.CheckWarn:
			mark = s.st.Warning.Render("warn  ")
		case r.Status == recovery.CheckInfo, r.Status == recovery.CheckSkip:
			mark = s.st.Muted.Render(fmt.Sprintf("%-6s", string(r.Status)))
		}
		actual := strings.ReplaceAll(r.Actual, "\n", "; ")
		line := fmt.Sprintf("  %s%-*s  %-*s  %s", mark, nameW, ansiCut(r.Name, nameW), valW, ansiCut(r.Expected, valW), ansiCut(actual, max(w-2-6-nameW-2-valW-2, 1)))
		bl := []string{strings.TrimRight(line, " ")}
		if r.Detail != "" && (r.Status == recovery.CheckFail || r.Status == recovery.CheckWarn) {
			detail := strings.ReplaceAll(r.Detail, "\n", "; ")
			// What blocks the swap, or needs a look, is read whole.
			bl = append(bl, strings.Split(s.st.Muted.Render(indent(detail, w, 8)), "\n")...)
		}
		blocks = append(blocks, bl)
		want += len(bl)
	}
	avail := h - strings.Count(top, "\n")
	checksH := avail
	if c.rows != nil && want+c.rows.want() > avail {
		least := rowsSection + min(len(c.rows.rows), 3)
		if len(c.rows.rows) > 3 {
			least++ // the line that says which rows are shown
		}
		checksH = avail - min(max(avail-want, least), c.rows.want())
	}

	// As many checks as fit; when not all do, the last line says which are shown.
	var cb strings.Builder
	cb.WriteString(s.st.Muted.Render(fmt.Sprintf("  %-6s%-*s  %-*s  %s", "", nameW, "Check", valW, "Expected", "Actual")) + "\n")
	room, shown := checksH-1, 0
	cut := want-1 > room || c.scroll > 0
	if cut {
		room--
	}
	for _, bl := range blocks {
		if len(bl) > room {
			break
		}
		cb.WriteString(strings.Join(bl, "\n") + "\n")
		room -= len(bl)
		shown++
	}
	switch from := min(c.scroll, len(c.results)); {
	case cut && shown == 0:
		cb.WriteString(s.st.Muted.Render(fmt.Sprintf("  check %d of %d is taller than the screen · ↑/↓ for others", from+1, len(c.results))) + "\n")
	case cut:
		cb.WriteString(s.st.Muted.Render(fmt.Sprintf("  checks %d–%d of %d · ↑/↓ for more", from+1, from+shown, len(c.results))) + "\n")
	}
	checks = cb.String()
	// The rows take what the checks left.
	return top, checks, avail - strings.Count(checks, "\n")
}

// checkColumns sizes the Check and Expected columns to what they hold: check names are
// what the operator reads against the runbook, so they get their width first; Expected
// (a live count, "42 with data") is short, and Actual takes the rest of the line.
func checkColumns(results []recovery.CheckResult, w int) (nameW, valW int) {
	nameW, valW = len("Check"), len("Expected")
	for _, r := range results {
		nameW = max(nameW, len([]rune(r.Name)))
		valW = max(valW, len([]rune(r.Expected)))
	}
	rest := w - 2 - 6 - 2 - 2 // indent, status, gaps
	nameW = min(nameW, max(rest-2*12, 12))
	valW = min(valW, max((rest-nameW)/2, 8))
	return nameW, valW
}

func (c *checksScreen) title() string { return "checks" }
func (c *checksScreen) keys() []key.Binding {
	ks := []key.Binding{key.NewBinding(key.WithKeys("up", "down"), key.WithHelp("↑/↓", "scroll"))}
	if c.rows != nil {
		ks = append(ks, keyRows)
	}
	if c.canSwap() {
		ks = append(ks, keySwap)
	}
	if c.waiting() {
		ks = append(ks, keyAbandon)
	} else {
		ks = append(ks, keyNext)
	}
	return ks
}
func (c *checksScreen) typing() bool { return c.confirm == "swap" }
func (c *checksScreen) busy() bool   { return c.working || c.waiting() }
