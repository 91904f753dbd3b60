package ui

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/spinner"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"

	"drconsole/checklists"
	"drconsole/incident"
	"drconsole/recovery"
	"drconsole/storage"
	"drconsole/wal"
)

// pitrScreen is the restore step's other way: a point in time from a base backup and the
// WAL archive. It takes the moment, shows the plan (base backup, segments, the RPO that
// achieves), asks for the database's name typed out, recovers a temporary cluster with
// live progress through the same incident.Run.RecoverDatabase as restore --to-time, and
// hands the dump of the database to the ordinary pre-flight, restore, checks and swap.
type pitrScreen struct {
	s       *session
	step    int
	state   pitrState
	reaches []wal.Reach
	field   textinput.Model
	target  time.Time
	plan    *wal.PITRPlan
	err     error
	attempt int

	events  chan tea.Msg
	last    wal.PITRProgress
	phase   string // the recovery's phase, then "dumping"
	phases  []string
	log     []string
	started time.Time
	spin    spinner.Model
	cancel  bool // asking whether to cancel
}

type pitrState int

const (
	pitrListing     pitrState = iota
	pitrUnavailable           // no base backup anywhere: dumps only
	pitrEditing               // the moment is typed
	pitrPlanning
	pitrConfirm // the plan is shown; the database's name is typed to start
	pitrRecovering
	pitrFailed
)

// phaseDumping follows the recovery's own phases: the database is dumped from it.
const phaseDumping = "dumping"

var pitrPhases = []string{wal.PhaseUnpacking, wal.PhaseStarting, wal.PhaseReplaying, wal.PhasePromoted, phaseDumping}

type (
	pitrReachesMsg struct{ reaches []wal.Reach }
	pitrPlannedMsg struct {
		attempt int
		plan    *wal.PITRPlan
		err     error
	}
	pitrProgressMsg wal.PITRProgress
	pitrLogMsg      string
	pitrDumpedMsg   struct {
		dump *incident.PITRDump
		src  recovery.Source
		err  error
	}
)

var (
	keyPITR       = key.NewBinding(key.WithKeys("t"), key.WithHelp("t", "a point in time"))
	keyCancelPITR = key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "cancel recovery"))
)

func newPITRScreen(s *session, step int) *pitrScreen {
	return &pitrScreen{s: s, step: step, spin: spinner.New(spinner.WithSpinner(spinner.Line), spinner.WithStyle(s.st.Accent))}
}

func (p *pitrScreen) init() tea.Cmd {
	ctx, locs := p.s.opt.Context, append([]storage.Location(nil), p.s.opt.Locations...)
	p.state = pitrListing
	return func() tea.Msg { return pitrReachesMsg{wal.Reaches(ctx, locs)} }
}

// bases counts the base backups listed in every location.
func (p *pitrScreen) bases() int {
	n := 0
	for _, r := range p.reaches {
		n += len(r.Bases)
	}
	return n
}

// suggestion is the moment offered first, and what it is: the target of a recovery to a
// point in time this incident made already (chosen once, it is the best guess); else, in a
// drill, the first sign of trouble (Alert: just before the fault, inside the sandbox's
// archive, where the incident's start is past the fault and refused); else the incident's
// start, to the minute. The operator moves it to just before things went wrong.
func (p *pitrScreen) suggestion() (time.Time, string) {
	s := p.s
	if s.inc != nil && s.inc.PITR != nil && s.inc.PITR.TargetTime != nil {
		return s.inc.PITR.TargetTime.UTC(), "the target of this incident's last recovery to a point in time"
	}
	if !s.opt.Alert.IsZero() {
		return s.opt.Alert.UTC(), "the first sign of trouble"
	}
	start := s.now
	if s.inc != nil {
		start = s.inc.Started
	}
	return start.UTC().Truncate(time.Minute), "the incident's start"
}

func (p *pitrScreen) update(msg tea.Msg) (screen, tea.Cmd) {
	s := p.s
	switch msg := msg.(type) {
	case pitrReachesMsg:
		p.reaches = msg.reaches
		if p.bases() == 0 || s.opt.PITR == nil {
			p.state = pitrUnavailable
			return p, nil
		}
		p.state = pitrEditing
		p.field = newField(s, "recover to (UTC): ", false)
		at, _ := p.suggestion()
		p.field.SetValue(at.Format("2006-01-02 15:04:05"))
		return p, p.field.Focus()
	case pitrPlannedMsg:
		if msg.attempt != p.attempt || p.state != pitrPlanning {
			return p, nil
		}
		if msg.err != nil { // said under the field, whole: it names the times that can be reached
			p.state, p.err = pitrEditing, msg.err
			return p, p.field.Focus()
		}
		p.state, p.plan, p.err = pitrConfirm, msg.plan, nil
		p.field = newField(s, "type "+s.opt.Conn.Database+" to start: ", false)
		return p, tea.Batch(p.field.Focus(), status(""))
	case pitrProgressMsg:
		e := wal.PITRProgress(msg)
		if e.Phase != "" && e.Phase != p.phase && p.phase != phaseDumping {
			p.phase = e.Phase
			p.phases = append(p.phases, e.Phase)
		}
		p.last = e
		return p, waitFor(p.events)
	case pitrLogMsg:
		line := s.opt.Now().UTC().Format("15:04:05") + " " + string(msg)
		p.log = append(p.log, line)
		if strings.HasPrefix(string(msg), "dumping ") {
			p.phase = phaseDumping
			p.phases = append(p.phases, phaseDumping)
		}
		return p, waitFor(p.events)
	case pitrDumpedMsg:
		s.cancelWork, p.cancel = nil, false
		if msg.err != nil {
			p.state, p.err = pitrFailed, msg.err
			p.log = append(p.log, "failed: "+oneLine(msg.err.Error()))
			return p, nil
		}
		// The dump is a backup like any other from here: pre-flight (already confirmed),
		// the restore into a scratch database, its checks and the typed swap. It is
		// removed once that restore ends, or with the console.
		var drop tea.Cmd
		if old := s.pitrDump; old != nil { // an earlier recovery's dump that never got restored
			drop = func() tea.Msg { old.Remove(); return nil }
		}
		s.pitrDump = msg.dump
		b := msg.src.Backup
		var taken *time.Time
		if !msg.dump.Point.IsZero() {
			t := msg.dump.Point
			taken = &t
		}
		rec := s.record(checklists.Event{Type: checklists.EventBackupChosen, Step: p.step, Backup: b.Name, Location: b.Location, BackupTime: taken, Bytes: b.Size})
		pf := newPreflightScreen(s, p.step, msg.src.Location, b)
		pf.confirmed, pf.ownDump = true, true
		p.state = pitrEditing
		p.field = newField(s, "recover to (UTC): ", false)
		p.field.SetValue(p.target.Format("2006-01-02 15:04:05"))
		return p, tea.Batch(drop, tea.Sequence(rec, push(pf)))
	case spinner.TickMsg:
		if p.state != pitrRecovering {
			return p, nil
		}
		var cmd tea.Cmd
		p.spin, cmd = p.spin.Update(msg)
		return p, cmd
	case tea.KeyPressMsg:
		return p.key(msg)
	}
	return p, nil
}

func (p *pitrScreen) key(msg tea.KeyPressMsg) (screen, tea.Cmd) {
	s := p.s
	k := msg.String()
	switch p.state {
	case pitrEditing, pitrConfirm:
		switch k {
		case "esc":
			if p.state == pitrConfirm { // back to the moment
				p.state = pitrEditing
				p.field = newField(s, "recover to (UTC): ", false)
				p.field.SetValue(p.target.Format("2006-01-02 15:04:05"))
				return p, p.field.Focus()
			}
			return p, pop
		case "enter":
			if p.state == pitrEditing {
				return p, p.planFor(p.field.Value())
			}
			if strings.TrimSpace(p.field.Value()) != s.opt.Conn.Database {
				return p, status(fmt.Sprintf("That is not %q: type the database name exactly to start.", s.opt.Conn.Database))
			}
			return p, p.recover()
		}
		var cmd tea.Cmd
		p.field, cmd = p.field.Update(msg)
		return p, cmd
	case pitrRecovering:
		if p.cancel {
			p.cancel = false
			if (k == "y" || k == "Y") && s.cancelWork != nil {
				s.cancelWork()
				p.log = append(p.log, "cancelling: the temporary cluster is stopped and removed")
			}
			return p, nil
		}
		if key.Matches(msg, keyCancelPITR) {
			p.cancel = true
		}
	case pitrFailed:
		if key.Matches(msg, keyRetry) {
			p.state, p.err = pitrEditing, nil
			p.field = newField(s, "recover to (UTC): ", false)
			p.field.SetValue(p.target.Format("2006-01-02 15:04:05"))
			return p, p.field.Focus()
		}
	}
	return p, nil
}

// planFor reads the moment typed and plans the recovery to it, as restore --to-time does;
// a mistake is said in one line and the field keeps what was typed.
func (p *pitrScreen) planFor(v string) tea.Cmd {
	s := p.s
	t, err := wal.ParseTarget(v)
	switch {
	case err != nil:
		return status(err.Error())
	case t.After(s.opt.Now()):
		return status(fmt.Sprintf("%s is in the future: choose a moment the archive can hold.", t.UTC().Format("2006-01-02 15:04:05 UTC")))
	case s.opt.Conn == nil:
		err := s.opt.ConnErr
		if err == nil {
			err = errors.New("no connection settings")
		}
		return status("no database to recover into: " + oneLine(err.Error()))
	}
	p.target, p.state, p.err = t.UTC(), pitrPlanning, nil
	p.attempt++
	ctx, plan, attempt := s.opt.Context, s.opt.PITR, p.attempt
	return tea.Batch(status(""), func() tea.Msg {
		pl, err := plan(ctx, t)
		return pitrPlannedMsg{attempt, pl, err}
	})
}

// recover runs the recovery and the dump off the update loop, streaming progress.
func (p *pitrScreen) recover() tea.Cmd {
	s := p.s
	ctx, done := s.startWork()
	p.state, p.started, p.phase, p.phases, p.log, p.last = pitrRecovering, s.opt.Now(), "", nil, nil, wal.PITRProgress{}
	p.events = make(chan tea.Msg, 256)
	ch, plan, step, run := p.events, p.plan, p.step, s.run
	db, role, workDir := s.opt.Conn.Database, s.opt.Conn.User, s.opt.WorkDir
	if run == nil {
		run = incident.New(nil, s.opt.Operator, s.drill)
	}
	send := func(m tea.Msg) {
		select { // never make the recovery wait for the screen
		case ch <- m:
		default:
		}
	}
	go func() {
		log := func(line string) { send(pitrLogMsg(line)) }
		plan.SetReporting(log, func(e wal.PITRProgress) { send(pitrProgressMsg(e)) }, role)
		d, err := run.RecoverDatabase(ctx, plan, step, workDir, db, role, log)
		var src recovery.Source
		if err == nil {
			src, err = dumpSource(ctx, d)
			if err != nil {
				d.Remove()
			}
		}
		done()
		ch <- pitrDumpedMsg{dump: d, src: src, err: err} // always delivered: the reader is re-armed until it comes
	}()
	return tea.Batch(waitFor(ch), p.spin.Tick)
}

// dumpSource is the dump as a backup of a local location of its own.
func dumpSource(ctx context.Context, d *incident.PITRDump) (recovery.Source, error) {
	loc := storage.NewDir("point in time", filepath.Dir(d.File))
	list, err := loc.List(ctx)
	if err != nil {
		return recovery.Source{}, err
	}
	for _, b := range list {
		if b.Name == filepath.Base(d.File) {
			return recovery.Source{Location: loc, Backup: b}, nil
		}
	}
	return recovery.Source{}, fmt.Errorf("the dump %s is not where it was written", d.File)
}

func waitFor(ch <-chan tea.Msg) tea.Cmd {
	return func() tea.Msg { return <-ch }
}

func (p *pitrScreen) view(w, h int) string {
	s := p.s
	var b strings.Builder
	b.WriteString(s.st.Header.Render("Restore to a point in time") + "\n")
	b.WriteString(s.st.Muted.Render(wrap("a base backup and the WAL archive, replayed in a temporary cluster; the database then goes through the safe restore", w)) + "\n\n")
	switch p.state {
	case pitrListing:
		b.WriteString(s.st.Muted.Render("Listing base backups and the WAL archive in every location…") + "\n")
	case pitrUnavailable:
		p.viewUnavailable(&b, w)
	case pitrEditing, pitrPlanning:
		p.viewReaches(&b, w)
		b.WriteString("\n" + p.hint(w) + "\n")
		b.WriteString(p.field.View() + "\n")
		if p.state == pitrPlanning {
			b.WriteString(s.st.Muted.Render(wrap("Choosing the base backup and proving the archive holds every segment to "+stampUTC(p.target)+"… nothing is changed yet.", w)) + "\n")
		} else if p.err != nil {
			b.WriteString(s.st.Danger.Render(wrap("✗ "+oneLine(p.err.Error()), w)) + "\n")
		}
	case pitrConfirm:
		p.viewPlan(&b, w)
		b.WriteString("\n" + s.st.Bold.Render(wrap("Nothing has changed yet. Type the database name to start the recovery.", w)) + "\n")
		b.WriteString(p.field.View() + "\n")
	case pitrRecovering, pitrFailed:
		p.viewProgress(&b, w, h)
	}
	return b.String()
}

func (p *pitrScreen) viewUnavailable(b *strings.Builder, w int) {
	s := p.s
	var where []string
	for _, r := range p.reaches {
		if r.Error != "" {
			where = append(where, r.Location+" (cannot be listed: "+r.Error+")")
		} else {
			where = append(where, r.Location)
		}
	}
	b.WriteString(s.st.Warning.Render(wrap("Point-in-time recovery is unavailable: no location ("+strings.Join(where, ", ")+") holds a base backup.", w)) + "\n\n")
	b.WriteString(wrap("The dumps restore the database only to the moment each was taken (esc, then choose one). Going back to a chosen minute needs a physical base backup and every WAL segment after it. To set it up on the database host:", w) + "\n\n")
	for _, l := range []string{
		"postgresql.conf: archive_mode = on",
		"                 archive_command = 'drconsole wal-push %p'",
		"                 archive_timeout = 15min",
		"then, daily:     drconsole basebackup",
		"and watch it:    drconsole wal-status",
	} {
		b.WriteString("  " + s.st.Accent.Render(ansiCut(l, w-2)) + "\n")
	}
}

// viewReaches lists what each location can reach, and the newest base backups.
func (p *pitrScreen) viewReaches(b *strings.Builder, w int) {
	s := p.s
	for _, r := range p.reaches {
		var line string
		switch {
		case len(r.Bases) == 0 && r.Error != "":
			line = s.st.Danger.Render(wrap(fmt.Sprintf("✗ %s: %s", r.Location, r.Error), w))
		case len(r.Bases) == 0:
			line = s.st.Muted.Render(wrap(r.Location+": no base backup", w))
		case r.To.IsZero():
			line = s.st.Warning.Render(wrap(fmt.Sprintf("! %s: %s, but no WAL archived after the newest", r.Location, fmt.Sprintf("%d base backup%s", len(r.Bases), plural(len(r.Bases), "", "s"))), w))
		default:
			line = wrap(fmt.Sprintf("%s: any moment from %s to %s (%s, newest %s)", r.Location,
				r.From.UTC().Format("2006-01-02 15:04:05"), r.To.UTC().Format("2006-01-02 15:04:05 UTC"), fmt.Sprintf("%d base backup%s", len(r.Bases), plural(len(r.Bases), "", "s")), r.Bases[0].Name), w)
		}
		b.WriteString(line + "\n")
	}
}

// hint says what to type, and what is offered; the ransomware scenario's restore is to
// just before the attack. A drill says when its first sign of trouble was seen.
func (p *pitrScreen) hint(w int) string {
	s := p.s
	_, offered := p.suggestion()
	text := "The moment to go back to, in UTC (YYYY-MM-DD HH:MM:SS, or with an offset such as +02:00): recovery stops before the first commit after it. Offered: " + offered + "."
	if s.scenario != nil && s.scenario.ID == "ransomware" {
		text = "Just before the attack: the moment before the first encrypted write or ransom note, in UTC (YYYY-MM-DD HH:MM:SS, or with an offset). Recovery stops before the first commit after it. Offered: " + offered
		if offered == "the incident's start" {
			text += "; move it earlier."
		} else {
			text += "."
		}
	}
	if !s.opt.Alert.IsZero() {
		text = "The first sign of trouble was seen at " + s.opt.Alert.UTC().Format("2006-01-02 15:04:05") + " UTC. " + text
	}
	return wrap(text, w)
}

// rpo is what recovering to the target loses: the incident's start minus the target.
func (p *pitrScreen) rpo() time.Duration {
	s := p.s
	start := s.now
	if s.inc != nil {
		start = s.inc.Started
	}
	return max(start.Sub(p.target), 0)
}

func (p *pitrScreen) viewPlan(b *strings.Builder, w int) {
	s := p.s
	pl := p.plan
	kv := func(k, v string) {
		for i, l := range strings.Split(indent(v, w, 14), "\n") {
			if i == 0 {
				l = s.st.Muted.Render(fmt.Sprintf("  %-12s", k)) + strings.TrimPrefix(l, strings.Repeat(" ", 14))
			}
			b.WriteString(l + "\n")
		}
	}
	kv("target", stampUTC(p.target))
	kv("base backup", fmt.Sprintf("%s from %s, consistent from %s", pl.Base.Name, pl.Base.Location, stampUTC(pl.Base.StopTime)))
	kv("WAL", fmt.Sprintf("%d segments, %s to %s; %s", pl.Segments, pl.Base.StartWAL, pl.Newest, strings.Join(pl.Path, ", then ")))
	rpo := fmt.Sprintf("%s (the incident's start minus the target)", checklists.FormatDuration(p.rpo()))
	line := ""
	if s.scenario != nil && s.scenario.RPO > 0 {
		if p.rpo() <= s.scenario.RPO {
			line = s.st.Success.Render("within the scenario's " + checklists.FormatDuration(s.scenario.RPO) + " RPO")
		} else {
			line = s.st.Danger.Render("over the scenario's " + checklists.FormatDuration(s.scenario.RPO) + " RPO")
		}
	}
	kv("RPO", rpo)
	if line != "" {
		b.WriteString(strings.Repeat(" ", 14) + line + "\n")
	}
	kv("into", fmt.Sprintf("%s on %s, through a scratch database, checks and the typed swap (the live one is kept)", s.opt.Conn.Database, serverOf(s.opt.Conn)))
}

func serverOf(c *recovery.Conn) string {
	if c == nil {
		return "?"
	}
	return fmt.Sprintf("%s:%d", c.Host, c.Port)
}

func (p *pitrScreen) viewProgress(b *strings.Builder, w, h int) {
	s := p.s
	e := p.last
	b.WriteString(ansiCut(fmt.Sprintf("to %s from %s", stampUTC(p.target), p.plan.Base.Name), w) + "\n")
	b.WriteString(phaseLine(p.s.st, pitrPhases, p.phase) + "\n")
	planned := e.Planned
	if planned == 0 {
		planned = p.plan.Segments
	}
	b.WriteString(fmt.Sprintf("WAL segments fetched %d · replayed %d of about %d", e.Fetched, e.Replayed, planned) + "\n")
	if e.Segment != "" {
		b.WriteString(s.st.Muted.Render("last replayed "+e.Segment) + "\n")
	}
	replay := "not known yet"
	if !e.Replay.IsZero() {
		replay = stampUTC(e.Replay)
		if !p.target.IsZero() {
			if d := p.target.Sub(e.Replay); d >= time.Minute {
				replay += " (" + checklists.FormatDuration(d.Round(time.Second)) + " before the target)"
			} else if d > 0 {
				replay += fmt.Sprintf(" (%.1fs before the target)", d.Seconds())
			} else {
				replay += " (the target)"
			}
		}
	}
	b.WriteString(ansiCut("Replayed to "+replay, w) + "\n")
	b.WriteString(ansiCut("Target      "+stampUTC(p.target), w) + "\n")
	el := max(s.now.Sub(p.started), 0)
	b.WriteString("Elapsed " + clockText(el) + "\n")
	switch {
	case p.cancel:
		b.WriteString(s.st.Danger.Render(wrap("Cancel the recovery? The temporary cluster is stopped and removed; the live database is untouched. (y/n)", w)) + "\n")
	case p.state == pitrRecovering:
		b.WriteString(p.spin.View() + " " + s.st.Stage(p.phase) + "\n")
	case p.err != nil:
		b.WriteString(s.st.Danger.Render(wrap("✗ "+oneLine(p.err.Error()), w)) + "\n")
		b.WriteString(wrap("Nothing was swapped: the live database is untouched. r: choose another moment.", w) + "\n")
	}
	b.WriteString(s.st.Muted.Render("Log") + "\n")
	n := max(h-strings.Count(b.String(), "\n"), 1)
	for _, l := range p.log[max(len(p.log)-n, 0):] {
		b.WriteString(ansiCut(l, w) + "\n")
	}
}

func stampUTC(t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return t.UTC().Format("2006-01-02 15:04:05.999999 UTC") // a target's fraction matters: commits are microseconds apart
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func (p *pitrScreen) title() string { return "point in time" }
func (p *pitrScreen) keys() []key.Binding {
	switch p.state {
	case pitrEditing:
		return []key.Binding{key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "plan the recovery")), keyBack}
	case pitrConfirm:
		return []key.Binding{key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "start the recovery")), key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "another moment"))}
	case pitrRecovering:
		return []key.Binding{keyCancelPITR}
	case pitrFailed:
		return []key.Binding{keyRetry, keyBack}
	}
	return []key.Binding{keyBack}
}
func (p *pitrScreen) typing() bool { return p.state == pitrEditing || p.state == pitrConfirm }
func (p *pitrScreen) busy() bool   { return p.state == pitrRecovering }
