package ui

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/progress"
	"charm.land/bubbles/v2/spinner"
	tea "charm.land/bubbletea/v2"

	"drconsole/checklists"
	"drconsole/incident"
	"drconsole/recovery"
	"drconsole/storage"
)

// progressScreen streams a restore: the engine reports on a channel that a re-armed
// command reads. Figures may be dropped when the screen is slow; restoreFinishedMsg
// always arrives.
type progressScreen struct {
	s       *session
	step    int
	plan    *recovery.Plan
	events  chan tea.Msg
	last    recovery.Event
	log     []string
	started time.Time
	running bool
	spin    spinner.Model
	confirm bool
	err     error
}

type (
	restoreProgressMsg recovery.Event
	restoreFinishedMsg struct {
		att *incident.Attempt
		err error
	}
)

var keyCancel = key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "cancel restore"))

func newProgressScreen(s *session, step int, plan *recovery.Plan) *progressScreen {
	return &progressScreen{s: s, step: step, plan: plan, last: recovery.Event{ETA: -1},
		spin: spinner.New(spinner.WithSpinner(spinner.Line), spinner.WithStyle(s.st.Accent))}
}

func (p *progressScreen) init() tea.Cmd {
	s := p.s
	ctx, done := s.startWork()
	p.running, p.started = true, s.opt.Now()
	p.events = make(chan tea.Msg, 256)
	ch, plan, step, run := p.events, p.plan, p.step, s.run
	go func() {
		rep := recovery.ReporterFunc(func(e recovery.Event) {
			select { // never make the restore wait for the screen
			case ch <- restoreProgressMsg(e):
			default:
			}
		})
		att, err := run.Restore(ctx, plan, step, rep) // journals the attempt, as the command line's does
		if att.Restored() != nil {
			s.keepScratch(att) // before Done: a hang-up from now on finds it and drops it
		}
		done()                                       // the scratch database is dropped or kept by now: a hang-up may exit
		ch <- restoreFinishedMsg{att: att, err: err} // always delivered: the reader is re-armed until it comes
	}()
	return tea.Batch(waitForRestore(ch), p.spin.Tick)
}

func waitForRestore(ch <-chan tea.Msg) tea.Cmd {
	return func() tea.Msg { return <-ch }
}

func (p *progressScreen) update(msg tea.Msg) (screen, tea.Cmd) {
	s := p.s
	switch msg := msg.(type) {
	case restoreProgressMsg:
		e := recovery.Event(msg)
		if e.Message != "" {
			p.log = append(p.log, e.Time.UTC().Format("15:04:05")+" "+e.Message)
			if len(p.log) > 200 {
				p.log = p.log[len(p.log)-200:]
			}
		}
		p.last = recovery.MergeFigures(p.last, e)
		return p, waitForRestore(p.events)
	case spinner.TickMsg:
		if !p.running {
			return p, nil
		}
		var cmd tea.Cmd
		p.spin, cmd = p.spin.Update(msg)
		return p, cmd
	case restoreFinishedMsg:
		p.running, s.cancelWork, p.confirm = false, nil, false
		p.err = msg.err
		var drop tea.Cmd
		if d := s.pitrDump; d != nil { // loaded or not, the point-in-time dump has served
			s.pitrDump = nil
			drop = func() tea.Msg { d.Remove(); return nil }
		}
		if msg.err == nil || errors.Is(msg.err, recovery.ErrChecksFailed) {
			if msg.err == nil && msg.att.Restored() != nil {
				s.attempt = msg.att
			}
			return p, tea.Batch(drop, push(newChecksScreen(s, p.step, msg.att, msg.err)))
		}
		p.log = append(p.log, "failed: "+msg.err.Error())
		return p, drop
	case tea.KeyPressMsg:
		k := msg.String()
		if p.confirm {
			p.confirm = false
			if (k == "y" || k == "Y") && s.cancelWork != nil {
				s.cancelWork()
				p.log = append(p.log, "cancelling: the scratch database will be dropped")
			}
			return p, nil
		}
		if key.Matches(msg, keyCancel) && p.running {
			p.confirm = true
		}
	}
	return p, nil
}

func (p *progressScreen) view(w, h int) string {
	s := p.s
	e := p.last
	var b strings.Builder
	b.WriteString(s.st.Header.Render("Restoring "+storage.Printable(p.plan.Source.Backup.Name)) + "\n")
	b.WriteString(s.st.Muted.Render(fmt.Sprintf("into %s on %s, then checks", p.plan.Scratch, p.plan.Server)) + "\n\n")
	size := e.Size
	if size == 0 {
		size = p.plan.Source.Backup.Size
	}
	frac := 0.0
	if size > 0 {
		frac = float64(e.Read) / float64(size)
	}
	bar := progress.New(progress.WithFillCharacters('█', '░'), progress.WithWidth(max(w-1, 10)))
	bar.FullColor, bar.EmptyColor = s.st.BarFull, s.st.BarEmpty
	b.WriteString(bar.ViewAs(min(max(frac, 0), 1)) + "\n")
	eta := "?"
	if e.ETA >= 0 && e.Read > 0 {
		eta = clockText(e.ETA)
	}
	b.WriteString(fmt.Sprintf("Read %s of %s · %s/s · ETA %s\n", bytesText(e.Read), bytesText(size), bytesText(int64(e.Rate)), eta))
	b.WriteString(fmt.Sprintf("Decompressed %s\n", bytesText(e.Decompressed)))
	if e.Phase != "" {
		b.WriteString(phaseLine(s.st, restorePhases, e.Phase) + "\n")
	}
	tables := fmt.Sprintf("Tables %d/%d", e.TablesDone, e.TablesTotal)
	if e.Table != "" && p.running && (e.Phase == "" || e.Phase == "load") { // after the load, no table is "now"
		tables += " · now " + e.Table
		if e.Rows > 0 {
			tables += fmt.Sprintf(", %s rows loaded", checklists.GroupDigits(e.Rows))
		}
	}
	b.WriteString(ansiCut(tables, w) + "\n")
	if e.IndexesTotal > 0 {
		b.WriteString(fmt.Sprintf("Indexes and constraints %d/%d built", e.IndexesDone, e.IndexesTotal) + "\n")
	}
	elapsed := s.now.Sub(p.started)
	if elapsed < 0 {
		elapsed = 0
	}
	budget := time.Duration(0)
	if p.step >= 1 && p.step <= len(s.scenario.Steps) {
		budget = s.scenario.Steps[p.step-1].Budget
	}
	el := "Elapsed " + clockText(elapsed)
	if budget > 0 {
		el += " of the step's " + checklists.FormatDuration(budget) + " budget"
		if elapsed > budget {
			el = s.st.Danger.Render(el + " (over)")
		}
	}
	b.WriteString(el + "\n")
	switch {
	case p.confirm:
		b.WriteString(s.st.Danger.Render("Cancel the restore? The scratch database is dropped; the live one is untouched. (y/n)") + "\n")
	case p.running:
		b.WriteString(p.spin.View() + " " + s.st.Stage(string(e.Stage)) + "\n")
	case p.err != nil:
		b.WriteString(s.st.Danger.Render(wrap("✗ "+p.err.Error(), w)) + "\n" + wrap(advice(p.err), w) + "\n")
	default:
		b.WriteString("\n")
	}
	b.WriteString(s.st.Muted.Render("Log") + "\n")
	used := strings.Count(b.String(), "\n")
	n := max(h-used, 1)
	from := max(len(p.log)-n, 0)
	for _, l := range p.log[from:] {
		b.WriteString(ansiCut(l, w) + "\n")
	}
	return b.String()
}

func (p *progressScreen) title() string { return "restore" }
func (p *progressScreen) keys() []key.Binding {
	if p.running {
		return []key.Binding{keyCancel}
	}
	return []key.Binding{keyBack}
}
func (p *progressScreen) typing() bool { return false }
func (p *progressScreen) busy() bool   { return p.running }

// restorePhases are a custom archive's phases in the order they run.
var restorePhases = []string{"pre-data", "load", "post-data"}

// phaseLine names the phases, the current one (or the last reached) marked and those
// done ticked: "Phase ✓ pre-data › [load] › post-data"; none marked before the first.
func phaseLine(st Styles, phases []string, phase string) string {
	at := slices.Index(phases, phase)
	if at < 0 && phase != "" {
		return "Phase " + phase
	}
	parts := make([]string, len(phases))
	for i, ph := range phases {
		switch {
		case i < at:
			parts[i] = "✓ " + ph
		case i == at:
			parts[i] = st.Accent.Render("[" + ph + "]")
		default:
			parts[i] = st.Muted.Render(ph)
		}
	}
	return "Phase " + strings.Join(parts, " › ")
}
