// Package ui is the incident console: a Bubble Tea program with one root model that owns
// the shared session and delegates to one model per screen.
package ui

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"drconsole/checklists"
	"drconsole/drill/inject"
	"drconsole/incident"
	"drconsole/incident/notify"
	"drconsole/recovery"
	"drconsole/storage"
	"drconsole/wal"
)

// Setting is one line of the effective configuration (drconsole config), shown on the
// start screen so the operator sees what the console will work on.
type Setting struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	Problem bool   `json:"problem,omitempty"`
}

// Options are what the console works with; the command line fills them in.
type Options struct {
	Settings []Setting // the effective configuration, in words
	// Prefixes are the application's backup name prefixes (<prefix>_full_…): its backups
	// come first in the picker and the newest full one is offered first.
	Prefixes []string
	// Vars fill the runbook's command templates ($DB_HOST, $DB_NAME, $S3_BUCKET, …).
	Vars      map[string]string
	Context   context.Context // parent of all work; cancelled on a hang-up
	StateDir  string
	Runbook   *checklists.Runbook
	Locations []storage.Location
	Conn      *recovery.Conn // nil: restores are refused with ConnErr
	ConnErr   error
	Keys      recovery.Keys // from --gpg-key and --passphrase-file; the console asks for a missing passphrase
	// Load is the command line's part of every restore's options: NoOwner,
	// AllowUnsigned (restore backups no trusted signer signed), TrustBackup.
	Load  recovery.Options
	Drill bool // --drill: every incident started is a drill
	// Sandbox: the server is a drill's sandbox (drconsole drill), nothing else is
	// reachable: restores are swapped in and the runbook's psql commands run, there.
	Sandbox bool
	// Scenario, in a drill, is the one it was built for: the scenario list starts on it.
	Scenario string
	// Score, in a drill, scores it once it is closed: the scorecard is shown, and where
	// its report is kept.
	Score func() (Scored, error)
	// Alert, in a sandbox drill, is when the first sign of trouble was seen: the moment
	// just before its fault, which the point in time is offered at.
	Alert    time.Time
	Operator string
	Host     string
	Now      func() time.Time // nil: time.Now; tests fix it
	Theme    Theme
	// Work counts restores and swaps in flight. The caller waits for it before exiting,
	// so that a cancelled restore has dropped its scratch database first.
	Work *sync.WaitGroup
	// Progress is the interval progress figures are passed to the screen at; 0: 100ms.
	Progress time.Duration
	// Notify are the channels updates and pages go to (the config file's notify: list);
	// NotifyErr is what was wrong with that list. Sender sends them (nil: the defaults).
	Notify    []*notify.Channel
	NotifyErr error
	Sender    *notify.Sender
	// Injects are a drill's injects (drill --injects): each is shown over every screen when
	// it falls due, until acknowledged, and journaled. ApplyInject does what one applies
	// for real (a sandbox drill) and says what it did; nil: they are shown only (a tabletop).
	// InjectScenario is the scenario the injects were written for: they fall due only in
	// a drill of it ("": any).
	Injects        []inject.Inject
	InjectScenario string
	ApplyInject    func(ctx context.Context, apply string) (string, error)
	// PITR plans a point-in-time recovery to a moment from the configured locations' base
	// backups and WAL archive, as restore --to-time does (restore_command, keys); nil:
	// the restore step offers no point in time. WorkDir is where its temporary cluster
	// and dump go ("": $TMPDIR).
	PITR    func(ctx context.Context, target time.Time) (*wal.PITRPlan, error)
	WorkDir string
}

// session is what every screen shares. Only Update changes it.
type session struct {
	opt           Options
	st            Styles
	width, height int
	now           time.Time
	journal       *checklists.Journal
	run           *incident.Run // the incident being worked: every restore, swap and record goes through it
	inc           *checklists.Incident
	scenario      *checklists.Scenario
	drill         bool
	cancelWork    context.CancelFunc // the restore or swap running now, if any
	attempt       *incident.Attempt  // the screens' view of the restore waiting for its swap; scratch owns it
	swapped       *recovery.Swapped

	// engine does the restores, swaps and abandons of every incident run; tests replace it.
	engine incident.Engine
	// pending: notes about what was done on the server before an incident was open (a
	// repair, a leftover dropped); they are recorded in the incident once one is.
	pending []string
	// offeredEvents: the incident's events already looked at for an update to offer.
	offeredEvents int
	// injectsFired: the injects shown or journaled (by ref); banners: those on the screen
	// waiting for their acknowledgement, oldest first.
	injectsOf    string // the incident they are of
	injectsFired map[string]bool
	banners      []shownInject

	// mu guards scratch and leaving, which work goroutines share with Update. scratch is
	// a restored copy nobody is working on; a swap or abandon in flight takes it out and
	// owns it until it ends. leaving: the console is quitting, so a copy handed back
	// after that is dropped by whoever hands it back.
	mu      sync.Mutex
	scratch *incident.Attempt
	leaving bool

	// pitrDump is the dump of a point-in-time recovery on its way through the restore:
	// removed when that restore ends, or with the console.
	pitrDump *incident.PITRDump
}

// Model is the root model.
type Model struct {
	s           *session
	stack       []screen
	help        help.Model
	showHelp    bool
	confirmQuit bool
	status      string
	hungUp      bool
}

// screen is one screen of the console.
type screen interface {
	init() tea.Cmd
	update(tea.Msg) (screen, tea.Cmd)
	view(width, height int) string
	title() string
	keys() []key.Binding
	typing() bool // a text field has the keys: q and esc go to it
	busy() bool   // work is running that quitting would cancel
}

// Messages the root handles.
type (
	pushMsg      struct{ s screen }
	replaceMsg   struct{ s screen } // replaces the whole stack under the scenario view
	popMsg       struct{}
	homeMsg      struct{} // back to the scenario view
	statusMsg    string
	tickMsg      time.Time
	journaledMsg struct{ err error }
	// HangupMsg is sent by the command line when the terminal went away.
	HangupMsg struct{}
	// incidentOpenedMsg: a journal was started or resumed; found is what was learnt about
	// earlier attempts from the server (an interrupted swap, a scratch copy left behind).
	incidentOpenedMsg struct {
		journal *checklists.Journal
		found   []string
		err     error
	}
)

func push(s screen) tea.Cmd      { return func() tea.Msg { return pushMsg{s} } }
func pop() tea.Msg               { return popMsg{} }
func goHome() tea.Msg            { return homeMsg{} }
func status(text string) tea.Cmd { return func() tea.Msg { return statusMsg(text) } }

// New returns the console's root model.
func New(opt Options) Model {
	if opt.Context == nil {
		opt.Context = context.Background()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Runbook == nil {
		opt.Runbook = checklists.Default()
	}
	if opt.Work == nil {
		opt.Work = &sync.WaitGroup{}
	}
	if opt.Progress == 0 {
		opt.Progress = 100 * time.Millisecond
	}
	s := &session{opt: opt, st: newStyles(opt.Theme), width: 80, height: 24, now: opt.Now(), drill: opt.Drill, engine: incident.Recovery}
	h := help.New()
	h.Styles = s.st.Help
	return Model{s: s, stack: []screen{newStartScreen(s)}, help: h}
}

func (m Model) Init() tea.Cmd {
	return tea.Batch(m.top().init(), tick())
}

func tick() tea.Cmd {
	return tea.Tick(time.Second, func(t time.Time) tea.Msg { return tickMsg(t) })
}

func (m Model) top() screen { return m.stack[len(m.stack)-1] }

// note records a note in the incident, or keeps it for the incident opened next.
func (s *session) note(text string) tea.Cmd {
	if s.run == nil {
		s.pending = append(s.pending, text)
		return nil
	}
	return s.record(checklists.Event{Type: checklists.EventNote, Who: s.opt.Operator, Note: text})
}

// record appends events to the journal in order, off the update loop.
func (s *session) record(events ...checklists.Event) tea.Cmd {
	run := s.run
	if run == nil || len(events) == 0 {
		return nil
	}
	return func() tea.Msg { return journaledMsg{run.Record(events...)} }
}

func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	s := m.s
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		s.width, s.height = msg.Width, msg.Height
		m.help.SetWidth(msg.Width)
		var cmds []tea.Cmd
		for i := range m.stack {
			var c tea.Cmd
			m.stack[i], c = m.stack[i].update(msg)
			cmds = append(cmds, c)
		}
		return m, tea.Batch(cmds...)
	case tickMsg:
		s.now = time.Time(msg)
		if s.opt.Now != nil {
			s.now = s.opt.Now()
		}
		m.offerNotify()
		return m, tea.Batch(m.fireInjects(), tick())
	case journaledMsg:
		if msg.err != nil {
			m.status = msg.err.Error()
		}
		if s.journal != nil {
			s.inc = s.journal.Incident()
		}
		m.offerNotify()
		return m, m.fireInjects() // an inject due when a step starts
	case injectAppliedMsg:
		return m, m.injectApplied(msg)
	case notifyDeliveredMsg:
		return m.notified(msg)
	case notifyFinishedMsg:
		if msg.failed > 0 {
			m.status = fmt.Sprintf("UPDATE NOT DELIVERED to %d of %d channels (journaled; see the report). u drafts another.", msg.failed, msg.sent+msg.failed)
		} else {
			m.status = fmt.Sprintf("Update delivered to all %d channels.", msg.sent)
		}
		return m, nil
	case statusMsg:
		m.status = string(msg)
		return m, nil
	case HangupMsg:
		if m.hungUp { // the signal and the cancelled context both report it
			return m, nil
		}
		m.hungUp = true
		if s.cancelWork != nil {
			s.cancelWork()
		}
		rec := s.record(checklists.Event{Type: checklists.EventSession, Note: "hung up: the terminal went away; work in progress cancelled"})
		return m, tea.Sequence(rec, s.dropScratch(), tea.Quit)
	case incidentOpenedMsg:
		if msg.err != nil {
			m.status = msg.err.Error()
			return m, nil
		}
		s.journal, s.inc = msg.journal, msg.journal.Incident()
		s.drill = s.inc.Drill
		s.run = incident.New(msg.journal, s.opt.Operator, s.drill)
		s.run.Sandbox = s.opt.Sandbox
		s.run.Engine = s.engine
		if sc, ok := s.opt.Runbook.Scenario(s.inc.Scenario); ok {
			s.scenario = sc
		} else {
			s.scenario = scenarioFromPlan(s.inc)
		}
		m.status = strings.Join(msg.found, " · ")
		var notes []checklists.Event
		for _, n := range s.pending {
			notes = append(notes, checklists.Event{Type: checklists.EventNote, Who: s.opt.Operator, Note: n})
		}
		s.pending = nil
		if len(s.inc.Events) > 1 { // resumed: what happened before is not offered again
			s.offeredEvents = len(s.inc.Events)
		}
		home := newScenarioScreen(s)
		m.stack = []screen{home}
		return m, tea.Batch(home.init(), s.record(notes...))
	case pushMsg:
		m.stack = append(m.stack, msg.s)
		m.status = ""
		return m, msg.s.init()
	case replaceMsg:
		m.stack = append(m.stack[:min(1, len(m.stack))], msg.s)
		m.status = ""
		return m, msg.s.init()
	case popMsg:
		if len(m.stack) > 1 {
			m.stack = m.stack[:len(m.stack)-1]
		}
		m.status = ""
		return m, nil
	case homeMsg:
		m.stack = m.stack[:1]
		return m, nil
	case tea.KeyPressMsg:
		return m.key(msg)
	}
	return m.forward(msg)
}

func (m Model) forward(msg tea.Msg) (tea.Model, tea.Cmd) {
	var cmd tea.Cmd
	m.stack[len(m.stack)-1], cmd = m.top().update(msg)
	return m, cmd
}

func (m Model) key(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	k := msg.String()
	if m.confirmQuit {
		m.confirmQuit = false
		if k == "y" || k == "Y" {
			if m.s.cancelWork != nil {
				m.s.cancelWork()
			}
			return m, tea.Sequence(m.s.record(checklists.Event{Type: checklists.EventSession, Note: "operator quit; work in progress cancelled"}), m.s.dropScratch(), tea.Quit)
		}
		return m, nil
	}
	if len(m.s.banners) > 0 && k != "ctrl+c" {
		return m.injectKey(msg)
	}
	if m.showHelp {
		m.showHelp = false
		if k == "?" || k == "esc" || k == "q" {
			return m, nil
		}
	}
	typing := m.top().typing()
	switch {
	case k == "ctrl+c" || (!typing && key.Matches(msg, keyQuit)):
		if m.top().busy() || m.s.cancelWork != nil {
			m.confirmQuit = true
			return m, nil
		}
		return m, tea.Quit
	case !typing && key.Matches(msg, keyHelp):
		m.showHelp = true
		return m, nil
	case !typing && (key.Matches(msg, keyUpdate) || key.Matches(msg, keyPage)):
		if cmd, ok := m.notifyKey(msg); ok {
			return m, cmd
		}
	case !typing && key.Matches(msg, keyBack) && !m.top().busy():
		if len(m.stack) > 1 {
			m.stack = m.stack[:len(m.stack)-1]
			m.status = ""
		}
		return m, nil
	}
	return m.forward(msg)
}

// dropScratch drops a restored copy that was neither swapped in nor abandoned, so that
// leaving the console never leaves a scratch database behind. A swap or abandon in
// flight owns its copy: it is not touched here, and the command, which is counted in
// Work, journals its outcome and drops the copy itself if the swap did not happen.
func (s *session) dropScratch() tea.Cmd {
	s.mu.Lock()
	s.leaving = true
	a := s.scratch
	s.scratch = nil
	s.mu.Unlock()
	s.attempt = nil
	if a == nil {
		return nil
	}
	work := s.opt.Work
	work.Add(1)
	return func() tea.Msg {
		defer work.Done()
		dropOnLeaving(a)
		return nil
	}
}

// dropOnLeaving drops a's restored copy; the attempt journals it.
func dropOnLeaving(a *incident.Attempt) {
	_ = a.Abandon(context.Background(), "dropped on leaving the console")
}

// keepScratch hands a restored copy to the session, from a work goroutine, before it
// reports itself done in Work. If the console is already leaving, the copy is dropped
// here instead, since dropScratch has run and will not see it.
func (s *session) keepScratch(a *incident.Attempt) {
	s.mu.Lock()
	leaving := s.leaving
	if !leaving {
		s.scratch = a
	}
	s.mu.Unlock()
	if leaving {
		dropOnLeaving(a)
	}
}

// takeScratch takes the restored copy for a swap or abandon, which then owns it.
func (s *session) takeScratch() *incident.Attempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.scratch
	s.scratch = nil
	return a
}

// startWork starts work that quitting or a hang-up cancels: it is counted in Work and
// cancelled by cancelWork. done must be called once the work has ended.
func (s *session) startWork() (context.Context, func()) {
	ctx, cancel := context.WithCancel(s.opt.Context)
	s.cancelWork = cancel
	work := s.opt.Work
	work.Add(1)
	return ctx, func() {
		cancel()
		work.Done()
	}
}

// Close closes the incident's journal, releasing its lock. Call it once the program has
// ended and Work is done, so that nothing records any more.
func (m Model) Close() error {
	m.s.pitrDump.Remove()
	if m.s.journal == nil {
		return nil
	}
	return m.s.journal.Close()
}

// HungUp reports whether the console ended because the terminal went away.
func (m Model) HungUp() bool { return m.hungUp }

// JournalErr is the first write to the incident journal that failed, or nil.
func (m Model) JournalErr() error {
	if m.s.run == nil {
		return nil
	}
	return m.s.run.Err()
}

// View draws the header, the screen, a status line and the help bar, in exactly the
// terminal's size.
func (m Model) View() tea.View {
	v := tea.NewView(m.Render())
	v.AltScreen = true
	v.WindowTitle = "drconsole"
	return v
}

// Render is the frame as text, for View and for tests.
func (m Model) Render() string {
	s := m.s
	w, h := max(s.width, 20), max(s.height, 8)
	header := m.header(w)
	global := []key.Binding{keyUp, keyDown, keyEnter, keyBack, keyHelp, keyQuit}
	if s.run != nil && len(s.opt.Notify) > 0 {
		global = append(global, keyUpdate, keyPage)
	}
	km := keyMap{short: m.top().keys(), global: global, typing: m.top().typing()}
	if ik := s.injectKeys(); ik != nil {
		km = keyMap{short: ik, global: ik, typing: true} // the inject has the keys: ctrl+c still quits
	}
	foot := m.help.ShortHelpView(km.ShortHelp())
	if m.showHelp {
		foot = m.help.FullHelpView(km.FullHelp())
	}
	footLines := strings.Split(foot, "\n")
	status := ""
	switch {
	case m.confirmQuit:
		status = "Work is running. Cancel it and quit? (y/n)"
	case m.status != "":
		status = m.status
	case s.run != nil && s.run.Err() != nil:
		status = "JOURNAL NOT WRITTEN (no swap until it is): " + s.run.Err().Error()
	}
	// A status is wrapped, never cut: up to a third of the screen, then its end is cut.
	statusLines := []string{""}
	if status != "" {
		statusLines = strings.Split(wrap(status, w), "\n")
		if limit := max(h/3, 1); len(statusLines) > limit {
			statusLines = append(statusLines[:limit-1], fitLine(strings.Join(statusLines[limit-1:], " "), w))
		}
	}
	bodyH := h - 2 - len(footLines) - len(statusLines)
	body := m.top().view(w, bodyH)
	lines := []string{header, ""}
	lines = append(lines, s.overlay(fit(body, w, bodyH), w)...)
	for _, l := range statusLines {
		lines = append(lines, fitLine(s.st.Danger.Render(l), w))
	}
	for _, l := range footLines {
		lines = append(lines, fitLine(l, w))
	}
	return strings.Join(lines, "\n")
}

func (m Model) header(w int) string {
	s := m.s
	left := s.st.Title.Render("drconsole") + s.st.Muted.Render(" · "+m.top().title())
	var right []string
	if s.drill {
		right = append(right, s.st.Drill.Render(" DRILL "))
	}
	if s.inc != nil {
		c := checklists.ClockAt(s.inc, s.opt.Runbook.Escalation, s.now)
		clock := fmt.Sprintf("%s / RTO %s", clockText(c.Elapsed), checklists.FormatDuration(c.RTO))
		if c.OverRTO {
			right = append(right, s.st.Danger.Render(clock+" OVER"))
		} else {
			right = append(right, s.st.Bold.Render(clock))
		}
	}
	r := strings.Join(right, " ")
	gap := w - lipgloss.Width(left) - lipgloss.Width(r)
	if gap < 1 {
		return fitLine(left+" "+r, w)
	}
	return left + strings.Repeat(" ", gap) + r
}

// fit cuts or pads text to exactly h lines no wider than w.
func fit(text string, w, h int) []string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > h {
		lines = lines[:max(h, 0)]
	}
	for i := range lines {
		lines[i] = fitLine(lines[i], w)
	}
	for len(lines) < h {
		lines = append(lines, "")
	}
	return lines
}

func fitLine(l string, w int) string {
	if lipgloss.Width(l) > w {
		return ansi.Truncate(l, w, "…")
	}
	return l
}

// clockText writes an elapsed time as H:MM:SS.
func clockText(d time.Duration) string {
	d = d.Round(time.Second)
	if d < 0 {
		d = 0
	}
	return fmt.Sprintf("%d:%02d:%02d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
}

// scenarioFromPlan rebuilds a scenario from a journal's plan when the runbook no longer
// has it, so an old incident can still be resumed.
func scenarioFromPlan(inc *checklists.Incident) *checklists.Scenario {
	sc := &checklists.Scenario{ID: inc.Scenario, Name: inc.ScenarioName, RTO: inc.Plan.RTO(), RPO: inc.Plan.RPO()}
	for _, ps := range inc.Plan.Steps {
		sc.Steps = append(sc.Steps, checklists.Step{Title: ps.Title, Kind: ps.Kind, Budget: time.Duration(ps.BudgetMinutes * float64(time.Minute))})
	}
	return sc
}
