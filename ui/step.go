package ui

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	"charm.land/bubbles/v2/viewport"
	tea "charm.land/bubbletea/v2"

	"drconsole/checklists"
	"drconsole/incident"
	"drconsole/recovery"
)

// stepScreen is one step: what to do, the commands (run after confirmation, dry-run in
// drills), the kind's action, and done or skip with a note.
type stepScreen struct {
	s       *session
	n       int // 1-based
	step    checklists.Step
	cur     cursor // over the commands
	mode    stepMode
	note    textinput.Model
	output  viewport.Model // the last command's output, scrolled with pgup/pgdn
	hasOut  bool
	running bool
}

type stepMode int

const (
	stepBrowse stepMode = iota
	stepConfirmRun
	stepNoteDone
	stepNoteSkip
)

type commandFinishedMsg struct {
	output string
	err    error
	work   bool // a command started with startWork
}

var (
	keyAction = key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "do the step"))
	keyRun    = key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "run command"))
	keyCopy   = key.NewBinding(key.WithKeys("y"), key.WithHelp("y", "copy command"))
	keyDone   = key.NewBinding(key.WithKeys("d"), key.WithHelp("d", "mark done"))
	keySkip   = key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "skip"))
	keyScroll = key.NewBinding(key.WithKeys("pgup", "pgdown"), key.WithHelp("pgup/pgdn", "scroll output"))
)

func newStepScreen(s *session, n int) *stepScreen {
	st := s.scenario.Steps[n-1]
	// The runbook's commands are templates: shown and run for the server being recovered.
	cmds := make([]checklists.Command, len(st.Commands))
	for i, c := range st.Commands {
		cmds[i] = c.Expand(s.opt.Vars)
	}
	st.Commands = cmds
	return &stepScreen{s: s, n: n, step: st, cur: cursor{n: len(st.Commands)}, note: newField(s, "note: ", false)}
}

// setOutput shows a command's output in an 8-line viewport, lines wrapped, never cut.
func (st *stepScreen) setOutput(text string) {
	st.output = viewport.New(viewport.WithWidth(max(st.s.width-2, 10)), viewport.WithHeight(8))
	st.output.SoftWrap = true
	st.output.SetContent(text)
	st.hasOut = true
}

// runnable reports whether the selected command may be run from the console: not one the
// runbook keeps for reference only (the legacy restore script and its placeholder password).
func (st *stepScreen) runnable() bool {
	return st.cur.n > 0 && !st.step.Commands[st.cur.i].Reference
}

func (st *stepScreen) init() tea.Cmd { return nil }

func commandText(c checklists.Command) string {
	if c.SQL != "" {
		return c.SQL
	}
	return c.Run
}

func (st *stepScreen) update(msg tea.Msg) (screen, tea.Cmd) {
	s := st.s
	switch msg := msg.(type) {
	case commandFinishedMsg:
		if msg.work {
			s.cancelWork = nil
		}
		st.running = false
		out := strings.TrimRight(msg.output, "\n")
		if msg.err != nil {
			out += "\nerror: " + msg.err.Error()
		}
		st.setOutput(out)
		st.output.GotoBottom() // where errors are
		return st, nil
	case tea.KeyPressMsg:
		k := msg.String()
		switch st.mode {
		case stepConfirmRun:
			st.mode = stepBrowse
			if k == "y" || k == "Y" {
				return st, st.run()
			}
			return st, nil
		case stepNoteDone, stepNoteSkip:
			switch k {
			case "esc":
				st.mode = stepBrowse
				return st, nil
			case "enter":
				note := strings.TrimSpace(st.note.Value())
				if st.mode == stepNoteSkip && note == "" {
					return st, status("Say why the step is skipped.")
				}
				typ := checklists.EventStepDone
				if st.mode == stepNoteSkip {
					typ = checklists.EventStepSkipped
				}
				st.mode = stepBrowse
				return st, tea.Sequence(s.record(checklists.Event{Type: typ, Step: st.n, Title: st.step.Title, Note: note, Who: s.opt.Operator}), pop)
			}
			var cmd tea.Cmd
			st.note, cmd = st.note.Update(msg)
			return st, cmd
		}
		switch k { // before the cursor, which takes pgup/pgdown too
		case "pgup":
			st.output.PageUp()
			return st, nil
		case "pgdown":
			st.output.PageDown()
			return st, nil
		}
		if st.cur.move(k) {
			return st, nil
		}
		switch {
		case key.Matches(msg, keyRun) && st.cur.n > 0 && !st.runnable():
			return st, status("This command is in the runbook for reference only; drconsole does its work safely (the restore step).")
		case key.Matches(msg, keyRun) && st.cur.n > 0 && !st.running:
			st.mode = stepConfirmRun
		case key.Matches(msg, keyCopy) && st.cur.n > 0:
			c := commandText(st.step.Commands[st.cur.i])
			return st, tea.Batch(tea.SetClipboard(c), s.record(checklists.Event{Type: checklists.EventCommandShown, Step: st.n, Command: c}), status("Copied to the clipboard (OSC 52)."))
		case key.Matches(msg, keyDone) && !st.running:
			st.mode, st.note = stepNoteDone, newField(s, "done, note (optional): ", false)
			return st, st.note.Focus()
		case key.Matches(msg, keySkip) && !st.running:
			st.mode, st.note = stepNoteSkip, newField(s, "skip, because: ", false)
			return st, st.note.Focus()
		case key.Matches(msg, keyPITR) && st.step.Kind == checklists.KindRestore && !st.running:
			return st, push(newPITRScreen(s, st.n))
		case key.Matches(msg, keyAction) && !st.running: // its result must come back to this screen
			return st, st.action()
		}
	}
	return st, nil
}

// action is what enter does for the step's kind.
func (st *stepScreen) action() tea.Cmd {
	s := st.s
	switch st.step.Kind {
	case checklists.KindRestore:
		return push(newBackupsScreen(s, st.n))
	case checklists.KindChecks:
		if s.attempt != nil && s.attempt.Restored() != nil {
			return push(newChecksScreen(s, st.n, s.attempt, nil))
		}
		return push(newLiveChecksScreen(s, st.n))
	case checklists.KindHealth:
		if st.step.URL == "" {
			return status("This step names no URL to check.")
		}
		return st.health(st.step.URL)
	case checklists.KindNotify:
		if s.run != nil {
			return push(newUpdateScreen(s, st.n, incident.OnUpdate))
		}
	case checklists.KindCommand:
		if st.runnable() && !st.running {
			st.mode = stepConfirmRun
		}
	}
	return nil
}

// inSandbox is how command c runs for real in a drill's sandbox, or false.
func (st *stepScreen) inSandbox(c checklists.Command) ([]string, bool) {
	if !st.s.drill || !st.s.opt.Sandbox {
		return nil, false
	}
	return sandboxArgv(c, st.s.opt.Conn)
}

// run runs the selected command (dry-run in a drill, but psql in its sandbox) and records it.
func (st *stepScreen) run() tea.Cmd {
	s := st.s
	c := st.step.Commands[st.cur.i]
	text := commandText(c)
	n, j, drill := st.n, s.journal, s.drill
	argv, inSandbox := st.inSandbox(c)
	drill = drill && !inSandbox
	var env []string
	if s.opt.Conn != nil {
		env = s.opt.Conn.Env(s.opt.Conn.Database)
	}
	st.running = true
	st.setOutput("running…")
	req := checklists.RunRequest{Step: n, Command: text, Confirmed: true, DryRun: drill, Env: append(recovery.OperatorEnv(), env...), Grace: 3 * time.Second}
	if c.SQL != "" {
		req.Argv = []string{"psql", "-X", "-v", "ON_ERROR_STOP=1", "-c", c.SQL}
	}
	if inSandbox {
		req.Argv = argv
	}
	if drill {
		why := "drill: recorded, not run:\n"
		if s.opt.Sandbox {
			why = "drill: recorded, not run (in a drill only psql against the sandbox runs):\n"
		}
		return func() tea.Msg {
			_, err := checklists.RunCommand(context.Background(), j, req)
			return commandFinishedMsg{output: why + text, err: err}
		}
	}
	ctx, done := s.startWork() // quitting or a hang-up kills it, and the exit waits for it
	return func() tea.Msg {
		defer done()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		// The same runner as every command drconsole runs for the operator: its own
		// process group, killed whole on a cancel, output kept to its last part, and the
		// journal's error shown, never dropped.
		res, err := checklists.RunCommand(cctx, j, req)
		out := res.Output
		if res.Truncated {
			out = "…(earlier output dropped)\n" + out
		}
		return commandFinishedMsg{output: fmt.Sprintf("%s\n(exit %d, %.1fs)", out, res.ExitCode, res.Duration.Seconds()), err: err, work: true}
	}
}

// health fetches the step's URL and records the result as a check.
func (st *stepScreen) health(url string) tea.Cmd {
	n, j, ctx := st.n, st.s.journal, st.s.opt.Context
	st.running = true
	st.setOutput("checking " + url + " …")
	return func() tea.Msg {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(cctx, http.MethodGet, url, nil)
		result, detail := checklists.CheckFail, ""
		if err == nil {
			var resp *http.Response
			resp, err = http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				detail = resp.Status
				if resp.StatusCode < 400 {
					result = checklists.CheckPass
				}
			}
		}
		if err != nil {
			detail = err.Error()
		}
		if j != nil {
			_ = j.Record(checklists.Event{Type: checklists.EventCheckResult, Step: n, Title: "GET " + url, Result: result, Detail: detail})
		}
		return commandFinishedMsg{output: fmt.Sprintf("GET %s: %s (%s)", url, detail, result)}
	}
}

func (st *stepScreen) view(w, h int) string {
	s := st.s
	var b strings.Builder
	budget := st.step.Timing
	if st.step.Budget > 0 {
		budget = "budget " + checklists.FormatDuration(st.step.Budget)
	}
	state := "pending"
	if s.inc != nil {
		c := checklists.ClockAt(s.inc, s.opt.Runbook.Escalation, s.now)
		if st.n <= len(c.Steps) {
			var paint func(...string) string
			state, paint = s.stepState(c.Steps[st.n-1])
			state = paint(state)
		}
	}
	b.WriteString(s.st.Header.Render(fmt.Sprintf("Step %d. %s", st.n, st.step.Title)) + "\n")
	b.WriteString(s.st.Muted.Render(fmt.Sprintf("%s · %s · ", st.step.Kind, budget)) + state + "\n\n")
	if st.step.Description != "" {
		b.WriteString(wrap(strings.TrimSpace(st.step.Description), w) + "\n\n")
	}
	switch st.step.Kind {
	case checklists.KindRestore:
		b.WriteString(s.st.Accent.Render("enter: choose the backup to restore (safe restore: scratch database, checks, then swap)") + "\n")
		b.WriteString(s.st.Accent.Render(wrap("t: a point in time instead (base backup and WAL archive, then the same safe restore)", w)) + "\n")
	case checklists.KindChecks:
		b.WriteString(s.st.Accent.Render("enter: run the integrity checks") + "\n")
	case checklists.KindHealth:
		b.WriteString(s.st.Accent.Render(wrap("enter: check "+st.step.URL, w)) + "\n")
	case checklists.KindNotify:
		if len(s.opt.Notify) > 0 {
			b.WriteString(s.st.Accent.Render(wrap("enter: draft the status update (shown, editable, sent when you confirm)", w)) + "\n")
		}
	}
	for _, item := range st.step.Items {
		b.WriteString("  • " + item + "\n")
	}
	if len(st.step.Commands) > 0 {
		b.WriteString(s.st.Muted.Render("Commands (r runs the selected one, y copies it):") + "\n")
		for _, l := range s.rows(st.cur, max(h/3, 3), func(i int) string {
			c := st.step.Commands[i]
			text := strings.ReplaceAll(commandText(c), "\n", " ⏎ ")
			if c.Platform != "" {
				text = "[" + c.Platform + "] " + text
			}
			if c.Note != "" {
				text = c.Note + ": " + text
			}
			if c.Reference {
				text = "(reference only) " + text
			}
			return text
		}) {
			b.WriteString(l + "\n")
		}
	}
	switch st.mode {
	case stepConfirmRun:
		ask := "Run this command now? (y/n)"
		if _, ok := st.inSandbox(st.step.Commands[st.cur.i]); ok {
			ask = "Run this command in the sandbox now? (y/n)"
		} else if s.drill {
			ask = "Record (drill: dry run) this command now? (y/n)"
		}
		b.WriteString("\n" + s.st.Warning.Render(ask) + "\n")
		b.WriteString(indent(commandText(st.step.Commands[st.cur.i]), w, 2) + "\n")
	case stepNoteDone, stepNoteSkip:
		b.WriteString("\n" + st.note.View() + "\n" + s.st.Muted.Render("enter to save · esc to cancel") + "\n")
	}
	if st.hasOut {
		b.WriteString("\n" + s.st.Muted.Render("Output:") + "\n")
		st.output.SetWidth(max(w-2, 10))
		for _, l := range strings.Split(st.output.View(), "\n") {
			b.WriteString("  " + l + "\n")
		}
	}
	return b.String()
}

func (st *stepScreen) title() string { return fmt.Sprintf("step %d", st.n) }
func (st *stepScreen) keys() []key.Binding {
	ks := []key.Binding{keyAction, keyDone, keySkip}
	if st.step.Kind == checklists.KindRestore {
		ks = append(ks, keyPITR)
	}
	if len(st.step.Commands) > 0 {
		ks = append(ks, keyRun, keyCopy, keyMove)
	}
	if st.hasOut {
		ks = append(ks, keyScroll)
	}
	return append(ks, keyBack)
}
func (st *stepScreen) typing() bool { return st.mode == stepNoteDone || st.mode == stepNoteSkip }
func (st *stepScreen) busy() bool   { return st.running }
