package ui

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"drconsole/checklists"
	"drconsole/incident"
	"drconsole/recovery"
	"drconsole/storage"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// t0 is the tests' fixed clock.
var t0 = time.Date(2024, 1, 25, 14, 0, 0, 0, time.UTC)

type harness struct {
	t    *testing.T
	m    Model
	now  time.Time
	quit bool // a tea.Quit came back
}

func newHarness(t *testing.T, drill bool) *harness {
	h := &harness{t: t, now: t0}
	h.m = New(Options{StateDir: t.TempDir(), Theme: PlainTheme(), Operator: "alice", Host: "bastion", Drill: drill,
		Now: func() time.Time { return h.now }})
	return h
}

// send delivers a message and runs the commands it returns, feeding their messages
// back, the way the program would (ticks and quits are dropped).
func (h *harness) send(msg tea.Msg) {
	h.t.Helper()
	var cmd tea.Cmd
	var m tea.Model
	m, cmd = h.m.Update(msg)
	h.m = m.(Model)
	h.run(cmd)
}

func (h *harness) run(cmd tea.Cmd) {
	if cmd == nil {
		return
	}
	msg := cmd()
	switch msg.(type) {
	case nil, tickMsg:
		return
	case tea.QuitMsg:
		h.quit = true
		return
	}
	if v := reflect.ValueOf(msg); v.Kind() == reflect.Slice && v.Type().Elem() == reflect.TypeOf(tea.Cmd(nil)) {
		for i := 0; i < v.Len(); i++ {
			h.run(v.Index(i).Interface().(tea.Cmd))
		}
		return
	}
	if _, ok := msg.(restoreProgressMsg); ok {
		return
	}
	h.send(msg)
}

func (h *harness) key(keys ...string) {
	h.t.Helper()
	for _, k := range keys {
		h.send(keyPress(k))
	}
}

func keyPress(k string) tea.KeyPressMsg {
	switch k {
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "esc":
		return tea.KeyPressMsg{Code: tea.KeyEscape}
	case "up":
		return tea.KeyPressMsg{Code: tea.KeyUp}
	case "down":
		return tea.KeyPressMsg{Code: tea.KeyDown}
	case "space":
		return tea.KeyPressMsg{Code: tea.KeySpace, Text: " "}
	case "backspace":
		return tea.KeyPressMsg{Code: tea.KeyBackspace}
	case "ctrl+c":
		return tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl}
	}
	r := []rune(k)
	return tea.KeyPressMsg{Code: r[0], Text: k}
}

func (h *harness) typeText(s string) {
	for _, r := range s {
		h.send(tea.KeyPressMsg{Code: r, Text: string(r)})
	}
}

func (h *harness) size(w, hh int) { h.send(tea.WindowSizeMsg{Width: w, Height: hh}) }

func (h *harness) screen() string { return h.m.Render() }

func (h *harness) top() screen { return h.m.top() }

// startIncident goes from the start screen to the database corruption scenario view.
func (h *harness) startIncident() {
	h.t.Helper()
	h.send(h.m.top().init()())
	h.key("enter") // new incident (or drill, under --drill)
	h.key("enter") // Database Corruption
	if _, ok := h.top().(*scenarioScreen); !ok {
		h.t.Fatalf("not on the scenario view:\n%s", h.screen())
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./ui -update)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file (go test ./ui -update to accept):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// both renders the screen at 80×24 and 120×40 and compares each with its golden file.
func (h *harness) both(name string) {
	h.t.Helper()
	for _, sz := range [][2]int{{80, 24}, {120, 40}} {
		h.size(sz[0], sz[1])
		got := ansi.Strip(h.screen())
		lines := strings.Split(got, "\n")
		if len(lines) != sz[1] {
			h.t.Errorf("%s at %dx%d: %d lines", name, sz[0], sz[1], len(lines))
		}
		for i, l := range lines {
			if w := ansi.StringWidth(l); w > sz[0] {
				h.t.Errorf("%s at %dx%d: line %d is %d wide: %q", name, sz[0], sz[1], i+1, w, l)
			}
		}
		golden(h.t, name+"_"+itoa(sz[0])+"x"+itoa(sz[1]), got)
	}
}

func itoa(n int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + fmtInt(n)) }

func fmtInt(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

func testCatalog() storage.Catalog {
	mk := func(name, loc string, size int64) storage.Backup {
		b := storage.ParseName(name)
		b.Location, b.Size = loc, size
		return b
	}
	// Copied in by hand during the incident: the newest file, but not a backup the job made.
	unknown := mk("spywatcher-before-fix.dump", "local", 530<<20)
	unknown.Key, unknown.Modified = "manual/spywatcher-before-fix.dump", t0.Add(-10*time.Minute)
	return storage.Catalog{
		Locations: []storage.LocationStatus{
			{Name: "primary", Where: "s3://spywatcher-backups/", Reachable: false, Err: "location unreachable: dial tcp: i/o timeout"},
			{Name: "local", Where: "/var/backups/spywatcher", Reachable: true, Backups: 5},
		},
		Backups: []storage.Backup{
			unknown,
			mk("spywatcher_incremental_20240125_133000.dump.gz.gpg", "local", 36<<20),
			mk("spywatcher_full_20240125_130000.dump.gz.gpg", "local", 512<<20),
			mk("spywatcher_full_20240125_020000.dump.gz.gpg", "local", 498<<20),
			mk("spywatcher_full_20240124_020000.dump.gz", "local", 470<<20),
		},
	}
}

func testPlan() *recovery.Plan {
	b := storage.ParseName("spywatcher_full_20240125_130000.dump.gz.gpg")
	b.Location, b.Size = "local", 512<<20
	return &recovery.Plan{
		Source: recovery.Source{Backup: b}, Mode: recovery.ModeSwap, Target: "spywatcher",
		Scratch: "spywatcher_restore_20240125_140000", Kept: "spywatcher_pre_restore_20240125_140000",
		Server: "db.internal:5432", ServerVersion: "15.5",
		Passed: []string{"key decrypts the backup", "archive parses: version 1.14, pg_dump 15.5, database \"spywatcher\", 42 tables with data",
			"pg_restore 15.5 reads archive version 1.14", "server db.internal:5432 reachable (PostgreSQL 15.5)"},
	}
}

func TestStartScreenOffersOpenIncidents(t *testing.T) {
	h := newHarness(t, false)
	h.send(h.top().init()())
	h.both("start")
	// An incident left open is offered first.
	h.key("enter", "enter")
	h2 := &harness{t: t, now: t0.Add(25 * time.Minute)}
	h2.m = New(Options{StateDir: h.m.s.opt.StateDir, Theme: PlainTheme(), Operator: "alice", Now: func() time.Time { return h2.now }})
	h.m.s.journal.Close()
	h2.send(h2.top().init()())
	if !strings.Contains(h2.screen(), "Resume incident: Database Corruption (started 25m ago, 0/8 steps done)") {
		t.Fatalf("no resume offered:\n%s", h2.screen())
	}
	h2.key("enter")
	if _, ok := h2.top().(*scenarioScreen); !ok || h2.m.s.inc.Scenario != "database-corruption" {
		t.Fatalf("resume did not open the scenario view:\n%s", h2.screen())
	}
}

func TestScenarioPickerAndView(t *testing.T) {
	h := newHarness(t, false)
	h.send(h.top().init()())
	h.key("enter")
	h.both("picker")
	h.key("enter")
	h.now = t0.Add(35 * time.Minute)
	h.send(tickMsg(h.now))
	h.both("scenario")
	if !strings.Contains(h.screen(), "Team Lead") {
		t.Errorf("35 minutes in, the team lead is due:\n%s", h.screen())
	}
}

func TestStepDoneAndSkipAreJournaled(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	h.key("enter") // step 1
	if st := h.m.s.inc.Steps[0].Status; st != checklists.StepRunning {
		t.Fatalf("opening a step starts it: %s", st)
	}
	h.both("step")
	h.key("d")
	h.typeText("scope: one table")
	h.key("enter")
	if st := h.m.s.inc.Steps[0]; st.Status != checklists.StepDone || st.Note != "scope: one table" {
		t.Fatalf("step 1 after done: %+v", st)
	}
	h.key("down", "enter", "s", "enter")
	if h.m.status == "" {
		t.Error("skipping without a reason must be refused")
	}
	h.typeText("app already stopped")
	h.key("enter")
	if st := h.m.s.inc.Steps[1]; st.Status != checklists.StepSkipped {
		t.Fatalf("step 2 after skip: %+v", st)
	}
}

func TestDrillCommandIsRecordedNotRun(t *testing.T) {
	h := newHarness(t, true)
	h.startIncident()
	h.key("enter", "r")
	if !strings.Contains(h.screen(), "drill: dry run") {
		t.Fatalf("no confirmation:\n%s", h.screen())
	}
	h.key("y")
	inc := h.m.s.journal.Incident()
	if len(inc.Commands) != 1 || !inc.Commands[0].DryRun || inc.Commands[0].Ran {
		t.Fatalf("commands: %+v", inc.Commands)
	}
}

func TestBackupPickerFiltersAndChooses(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	h.key("down", "down", "down", "enter", "enter")
	bs, ok := h.top().(*backupsScreen)
	if !ok {
		t.Fatalf("not on the backups screen:\n%s", h.screen())
	}
	h.send(catalogListedMsg{testCatalog()})
	// The highlighted backup's first bytes say it is not signed (the test's locations
	// are not real, so the probe itself could not read it).
	h.send(signatureProbedMsg{id: probeID(bs.shown[bs.cur.i]), sig: recovery.Signature{}})
	if !strings.Contains(h.screen(), "not signed: nothing proves this backup is yours") {
		t.Errorf("an unsigned backup is not flagged:\n%s", h.screen())
	}
	h.both("backups")
	var order []string
	for _, b := range bs.shown {
		order = append(order, b.Name)
	}
	want := []string{"spywatcher_incremental_20240125_133000.dump.gz.gpg", "spywatcher_full_20240125_130000.dump.gz.gpg",
		"spywatcher_full_20240125_020000.dump.gz.gpg", "spywatcher_full_20240124_020000.dump.gz", "spywatcher-before-fix.dump"}
	if !reflect.DeepEqual(order, want) {
		t.Errorf("recognised backups newest first, then unknown files:\n got %q\nwant %q", order, want)
	}
	if got := bs.shown[bs.cur.i].Name; got != "spywatcher_full_20240125_130000.dump.gz.gpg" {
		t.Errorf("highlighted first: %s, want the newest full backup", got)
	}
	h.size(80, 24)
	screen := ansi.Strip(h.screen())
	for _, want := range []string{
		"full …130000.dump.gz.gpg",                        // the table's name keeps kind and layers
		"\nspywatcher_full_20240125_130000.dump.gz.gpg\n", // and the highlighted one is whole under it
		"local     -    spywatcher-before-fix.dump",       // no RPO verdict from a file's write time
	} {
		if !strings.Contains(screen, want) {
			t.Errorf("80×24 picker lacks %q:\n%s", want, screen)
		}
	}
	h.key("G")
	if screen := ansi.Strip(h.screen()); !strings.Contains(screen, "manual/spywatcher-before-fix.dump") || !strings.Contains(screen, "not a name the backup job makes") {
		t.Errorf("an unknown file's detail says where it is and what it is not:\n%s", screen)
	}
	h.key("o")
	if got := bs.shown[bs.cur.i].Name; got != "spywatcher-before-fix.dump" || bs.shown[0].Name != "spywatcher_full_20240124_020000.dump.gz" {
		t.Errorf("sorting keeps the highlight and unknown files last: highlight %s, first %s", got, bs.shown[0].Name)
	}
	h.key("o", "o", "o", "g")
	h.key("/")
	h.typeText("20240124")
	h.key("enter")
	if len(bs.shown) != 1 {
		t.Fatalf("filter kept %d backups", len(bs.shown))
	}
	h.key("/", "ctrl+c")
	if !h.quit {
		t.Fatal("ctrl+c quits even while typing when nothing runs")
	}
}

func TestBackupPickerBeforeFilter(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	h.key("down", "down", "down", "enter", "enter")
	h.send(catalogListedMsg{testCatalog()})
	h.key("b")
	h.typeText("2024-01-25 12:00")
	h.key("enter")
	bs := h.top().(*backupsScreen)
	if len(bs.shown) != 2 || bs.shown[0].Name != "spywatcher_full_20240125_020000.dump.gz.gpg" {
		t.Fatalf("before filter: %+v", bs.shown)
	}
}

func TestPreflightAsksPassphraseAndTypedName(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	p := newPreflightScreen(h.m.s, 4, storage.NewDir("local", t.TempDir()), testPlan().Source.Backup)
	p.attempt = 1
	h.send(pushMsg{p})
	// No connection settings: refused with the reason.
	if p.state != preflightFailed {
		t.Fatalf("state %v", p.state)
	}
	p.state, p.attempt = preflightChecking, 1
	h.send(planPreparedMsg{attempt: 1, err: recovery.ErrNeedPassphrase})
	if p.state != preflightPassphrase || !p.typing() {
		t.Fatalf("a missing passphrase is asked for: state %v", p.state)
	}
	h.typeText("s3cret")
	if strings.Contains(h.screen(), "s3cret") {
		t.Fatal("the passphrase is echoed")
	}
	p.state = preflightChecking
	h.send(planPreparedMsg{attempt: p.attempt, plan: testPlan()})
	if p.state != preflightConfirm {
		t.Fatalf("state %v", p.state)
	}
	h.both("preflight")
	h.typeText("spywatche")
	h.key("enter")
	if _, ok := h.top().(*preflightScreen); !ok || !strings.Contains(h.m.status, "not \"spywatcher\"") {
		t.Fatalf("a wrong name must not start the restore: %q", h.m.status)
	}
	h.key("q") // typed into the field, not quitting
	if h.quit || p.field.Value() != "spywatcheq" {
		t.Fatalf("q while typing: quitting %v, field %q", h.quit, p.field.Value())
	}
}

func TestProgressCancelAsksFirst(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	cancelled := false
	p := newProgressScreen(h.m.s, 4, testPlan())
	p.running, p.started = true, t0
	p.events = make(chan tea.Msg, 10) // each re-armed read gets a nil, which the harness drops
	for range 10 {
		p.events <- nil
	}
	h.m.s.cancelWork = func() { cancelled = true }
	h.m.stack = append(h.m.stack, p)
	h.m.s.now = t0.Add(3 * time.Minute)
	h.send(restoreProgressMsg(recovery.Event{Time: t0, Stage: recovery.StageStream, Read: 200 << 20, Size: 512 << 20,
		Decompressed: 1400 << 20, Rate: 48 << 20, ETA: 7 * time.Second, TablesDone: 17, TablesTotal: 42, Table: `"Guild"`, Message: "streaming into spywatcher_restore_20240125_140000"}))
	h.both("progress")
	h.key("q")
	if !h.m.confirmQuit || h.quit {
		t.Fatal("q during a restore must ask first")
	}
	h.key("n", "esc")
	if h.top() != screen(p) {
		t.Fatal("esc must not leave a running restore")
	}
	h.key("c")
	if cancelled || !p.confirm {
		t.Fatal("cancel must ask first")
	}
	h.key("y")
	if !cancelled {
		t.Fatal("cancel confirmed but not cancelled")
	}
	h.send(restoreFinishedMsg{err: recovery.ErrCancelled})
	if p.running || h.m.s.cancelWork != nil || !strings.Contains(h.screen(), "scratch database was dropped") {
		t.Fatalf("after the final message:\n%s", h.screen())
	}
}

func TestChecksSwapNeedsConfirmation(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	r := &recovery.Restored{Plan: testPlan(), Database: "spywatcher_restore_20240125_140000", Read: 512 << 20, Tables: 42, Duration: 95 * time.Second,
		Checks: []recovery.CheckResult{
			{Name: "restored database reachable", Status: recovery.CheckPass, Blocking: true},
			{Name: "tables restored", Status: recovery.CheckPass, Blocking: true, Expected: "42 with data", Actual: "42"},
			{Name: `users ("User" rows)`, Status: recovery.CheckPass, Expected: "10234", Actual: "10234"},
			{Name: `API keys ("ApiKey" rows)`, Status: recovery.CheckWarn, Expected: "0", Actual: "812", Detail: "live database spywatcher has 0; the backup has 812"},
			{Name: `"Session" table exists`, Status: recovery.CheckPass, Actual: "true"},
			{Name: "WAL archiving (pg_stat_archiver)", Status: recovery.CheckInfo, Actual: "archived=120 failed=0 last=000000010000000000000042 at 2024-01-25 13:59:01+00"},
		},
		// Every row as in the archive: shown all the same, it is the proof.
		Rows: []recovery.TableRows{
			{Name: "public.ApiKey", Archive: 812, Restored: 812, Live: 0},
			{Name: "public.Guild", Archive: 120, Restored: 120, Live: 120},
			{Name: "public.Session", Archive: 0, Restored: 0, Live: 31},
			{Name: "public.User", Archive: 10234, Restored: 10234, Live: 10240},
		}}
	h.send(pushMsg{newChecksScreen(h.m.s, 4, h.restored(r, nil), nil)})
	h.both("checks")
	h.size(80, 24)
	if screen := ansi.Strip(h.screen()); !strings.Contains(screen, "Rows: 4 tables, every row as in the archive") ||
		!strings.Contains(screen, "  ok        public.User        10234     10234     10240") || strings.Contains(screen, "pgup/pgdn for more") {
		t.Errorf("80×24 does not show the four tables' rows whole:\n%s", screen)
	}
	screen := ansi.Strip(h.screen())
	for _, r := range h.top().(*checksScreen).results {
		if !strings.Contains(screen, r.Name) {
			t.Errorf("check name %q is cut at 120×40:\n%s", r.Name, screen)
		}
	}
	h.size(80, 24)
	screen = ansi.Strip(h.screen())
	for _, r := range h.top().(*checksScreen).results {
		if !strings.Contains(screen, r.Name) {
			t.Errorf("check name %q is cut at 80×24:\n%s", r.Name, screen)
		}
	}
	if got := len(h.m.s.inc.Checks); got != 6 {
		t.Errorf("journaled checks: %d", got)
	}
	h.key("q")
	if !h.m.confirmQuit {
		t.Error("quitting with the scratch database in place asks first")
	}
	h.key("n", "s")
	c := h.top().(*checksScreen)
	if c.confirm != "swap" || c.working || !c.typing() {
		t.Fatalf("swap must ask for the database name: %+v", c.confirm)
	}
	// y, a wrong name or a near one never swap (DESIGN §3): the name, typed, does.
	for _, typed := range []string{"y", "spywatche", "spywatcher_restore"} {
		h.typeText(typed)
		h.key("enter")
		if c.working || c.confirm != "swap" {
			t.Fatalf("%q swapped", typed)
		}
		if !strings.Contains(ansi.Strip(h.screen()), `That is not "spywatcher"`) {
			t.Errorf("after %q the screen does not say why:\n%s", typed, ansi.Strip(h.screen()))
		}
		for range typed {
			h.key("backspace")
		}
	}
	h.key("esc")
	if c.confirm != "" || c.working {
		t.Fatal("esc must not swap")
	}
}

func TestChecklistTicksWithOperator(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	h.now = t0.Add(90 * time.Minute)
	h.send(tickMsg(h.now))
	h.key("c", "space", "space")
	inc := h.m.s.inc
	if len(inc.Ticks) != 2 || inc.Ticks[0].Who != "alice" || inc.Ticks[0].Item != "Verify all services are operational" {
		t.Fatalf("ticks: %+v", inc.Ticks)
	}
	h.both("checklist")
	h.key("x")
	h.both("close")
	h.key("enter", "y")
	c := h.top().(*closeScreen)
	if c.path == "" {
		t.Fatalf("no report written: %v", c.err)
	}
	data, err := os.ReadFile(c.path)
	if err != nil || !strings.Contains(string(data), "Database Corruption") {
		t.Fatalf("report: %v %s", err, data)
	}
	if !h.m.s.inc.Closed {
		t.Error("incident not closed")
	}
}

func TestHangupCancelsWorkAndRecords(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	cancelled := false
	h.m.s.cancelWork = func() { cancelled = true }
	h.send(HangupMsg{})
	if !cancelled || !h.quit {
		t.Fatalf("hang-up: cancelled %v, quitting %v", cancelled, h.quit)
	}
	inc := h.m.s.journal.Incident()
	if len(inc.Sessions) == 0 || !strings.Contains(inc.Sessions[len(inc.Sessions)-1].Text, "hung up") {
		t.Fatalf("sessions: %+v", inc.Sessions)
	}
}

func TestHelpShowsAllKeys(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	h.key("?")
	if !strings.Contains(h.screen(), "close incident") || !strings.Contains(h.screen(), "back") {
		t.Fatalf("full help:\n%s", h.screen())
	}
	h.key("?")
	if h.m.showHelp {
		t.Fatal("? toggles the help")
	}
}

// engine stands in for recovery in screens tested without a server: the restore returns
// a prepared copy, and swaps and abandons do what the test says.
type engine struct {
	restored *recovery.Restored
	swap     func(ctx context.Context, r *recovery.Restored) (*recovery.Swapped, error)

	mu      sync.Mutex
	dropped []*recovery.Restored
}

func (e *engine) Restore(context.Context, *recovery.Plan, recovery.Reporter) (*recovery.Restored, error) {
	return e.restored, nil
}

func (e *engine) Swap(ctx context.Context, r *recovery.Restored, _ recovery.Reporter, opts recovery.SwapOptions) (*recovery.Swapped, error) {
	if opts.Intent != nil {
		if err := opts.Intent(recovery.SwapIntent{Mode: r.Plan.Mode, Target: r.Plan.Target, Scratch: r.Plan.Scratch, Kept: r.Plan.Kept, TargetOID: 1, ScratchOID: 2}); err != nil {
			return nil, err
		}
	}
	return e.swap(ctx, r)
}

func (e *engine) Abandon(_ context.Context, r *recovery.Restored) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dropped = append(e.dropped, r)
	return nil
}

func (e *engine) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.dropped)
}

// restored runs a restore attempt of the incident whose engine returns r, and hands the
// copy to the session as the progress screen does.
func (h *harness) restored(r *recovery.Restored, swap func(context.Context, *recovery.Restored) (*recovery.Swapped, error)) *incident.Attempt {
	h.t.Helper()
	e := &engine{restored: r, swap: swap}
	h.m.s.run.Engine = e
	att, err := h.m.s.run.Restore(context.Background(), r.Plan, 4, nil)
	if err != nil || att.Restored() != r {
		h.t.Fatalf("restore attempt: %v", err)
	}
	h.m.s.keepScratch(att)
	h.m.s.attempt = att
	return att
}

func (h *harness) engine() *engine { return h.m.s.run.Engine.(*engine) }

func journalOutcome(inc *checklists.Incident) string {
	r := inc.Restore()
	if r == nil {
		return "no restore"
	}
	return r.State() + ": " + r.Detail
}

// A hang-up while a swap runs must leave the copy to the swap, which journals its outcome
// even though the program ends before its message is handled.
func TestHangupDuringSwapLeavesTheCopyToTheSwap(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	s := h.m.s
	release := make(chan struct{})
	r := &recovery.Restored{Plan: testPlan(), Database: testPlan().Scratch,
		Checks: []recovery.CheckResult{{Name: "tables restored", Status: recovery.CheckPass, Blocking: true}}}
	att := h.restored(r, func(ctx context.Context, r *recovery.Restored) (*recovery.Swapped, error) {
		<-release // commits whatever the context says, as a swap past its transaction does
		return &recovery.Swapped{Live: r.Plan.Target, Kept: r.Plan.Kept}, nil
	})
	h.send(pushMsg{newChecksScreen(s, 4, att, nil)})
	h.key("s")
	h.typeText("spywatcher")
	m, cmd := h.m.Update(keyPress("enter"))
	h.m = m.(Model)
	if cmd == nil {
		t.Fatal("typing the name did not start the swap")
	}
	result := make(chan tea.Msg)
	go func() { result <- cmd() }()
	h.send(HangupMsg{})
	if n := h.engine().count(); n != 0 {
		t.Fatalf("hang-up dropped the copy a swap is working on (%d)", n)
	}
	close(release)
	<-result // never delivered: the program has quit
	s.opt.Work.Wait()
	if got := journalOutcome(s.journal.Incident()); !strings.HasPrefix(got, "ok: spywatcher is the restored copy") {
		t.Fatalf("journal after the swap: %s", got)
	}
}

// A restore that ends just as the console quits, before its message is handled, must
// not leave the scratch database behind.
func TestRestoreFinishingAtHangupIsDropped(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	s := h.m.s
	r := &recovery.Restored{Plan: testPlan(), Database: testPlan().Scratch}
	e := &engine{restored: r}
	s.run.Engine = e
	m, _ := h.m.Update(pushMsg{newProgressScreen(s, 4, testPlan())}) // restoreFinishedMsg is never read
	h.m = m.(Model)
	s.opt.Work.Wait()
	h.send(HangupMsg{})
	s.opt.Work.Wait()
	if e.count() != 1 || e.dropped[0] != r {
		t.Fatalf("scratch copy dropped %d times", e.count())
	}
	if got := journalOutcome(s.journal.Incident()); !strings.HasPrefix(got, "abandoned: dropped on leaving the console") {
		t.Fatalf("journal: %s", got)
	}
}

// A swap that fails because the console is leaving drops the copy it was handed.
func TestSwapFailingAfterHangupDropsTheCopy(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	s := h.m.s
	r := &recovery.Restored{Plan: testPlan(), Database: testPlan().Scratch,
		Checks: []recovery.CheckResult{{Name: "tables restored", Status: recovery.CheckPass, Blocking: true}}}
	att := h.restored(r, func(ctx context.Context, r *recovery.Restored) (*recovery.Swapped, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	h.send(pushMsg{newChecksScreen(s, 4, att, nil)})
	h.key("s")
	h.typeText("spywatcher")
	m, cmd := h.m.Update(keyPress("enter"))
	h.m = m.(Model)
	go cmd()
	h.send(HangupMsg{})
	s.opt.Work.Wait()
	if h.engine().count() != 1 {
		t.Fatalf("scratch copy dropped %d times", h.engine().count())
	}
}

// commandStep is a step screen over one shell command.
func commandStep(s *session, run string) *stepScreen {
	step := checklists.Step{Title: "run it", Kind: checklists.KindCommand, Commands: []checklists.Command{{Run: run}}}
	return &stepScreen{s: s, n: 1, step: step, cur: cursor{n: 1}, note: newField(s, "note: ", false)}
}

// A step command is work: counted, cancelled by a hang-up, and killed with its children.
func TestHangupKillsStepCommandAndItsChildren(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	s := h.m.s
	h.send(pushMsg{commandStep(s, "sleep 60 & sleep 60; wait")})
	h.key("r")
	m, cmd := h.m.Update(keyPress("y"))
	h.m = m.(Model)
	if s.cancelWork == nil || cmd == nil {
		t.Fatal("a running step command must be cancellable")
	}
	result := make(chan tea.Msg, 1)
	go func() { result <- cmd() }()
	time.Sleep(200 * time.Millisecond)
	h.send(HangupMsg{})
	select {
	case msg := <-result:
		if _, ok := msg.(commandFinishedMsg); !ok {
			t.Fatalf("finished with %T", msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the step command outlived the hang-up")
	}
	waited := make(chan struct{})
	go func() { s.opt.Work.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("Work not released")
	}
}

// While a step's command runs, enter, d and s wait: the result comes back to this screen.
func TestStepKeysWaitForRunningCommand(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	s := h.m.s
	n := 0
	for i, st := range s.scenario.Steps {
		if st.Kind == checklists.KindRestore {
			n = i + 1
		}
	}
	if n == 0 {
		t.Fatal("no restore step")
	}
	st := newStepScreen(s, n)
	h.send(pushMsg{st})
	st.running = true
	h.key("enter", "d", "s")
	if h.top() != screen(st) || st.mode != stepBrowse {
		t.Fatalf("keys acted on a busy step: top %T, mode %v", h.top(), st.mode)
	}
	h.send(commandFinishedMsg{output: "ok"})
	if st.running {
		t.Fatal("still running")
	}
}

// pgup and pgdown scroll the command's output, not the command list.
func TestStepPageKeysScrollOutput(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	st := commandStep(h.m.s, "true")
	st.step.Commands = append(st.step.Commands, checklists.Command{Run: "false"})
	st.cur.n = 2
	h.send(pushMsg{st})
	var out []string
	for i := range 30 {
		out = append(out, "line "+itoa(i))
	}
	h.send(commandFinishedMsg{output: strings.Join(out, "\n")})
	if screen := h.screen(); !strings.Contains(screen, "line 29") || strings.Contains(screen, "line 21") {
		t.Fatalf("after the output the end shows:\n%s", screen)
	}
	h.send(tea.KeyPressMsg{Code: tea.KeyPgUp})
	if screen := h.screen(); !strings.Contains(screen, "line 21") || strings.Contains(screen, "line 29") {
		t.Fatalf("pgup:\n%s", screen)
	}
	h.send(tea.KeyPressMsg{Code: tea.KeyPgDown})
	if screen := h.screen(); !strings.Contains(screen, "line 29") || st.cur.i != 0 {
		t.Fatalf("pgdown: cursor %d\n%s", st.cur.i, screen)
	}
}

// When the report cannot be written the incident is closed already; enter again writes it.
func TestCloseRetriesTheReport(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	h.key("c", "x")
	if _, ok := h.top().(*closeScreen); !ok {
		t.Fatalf("not on the close screen:\n%s", h.screen())
	}
	path := ReportPath(h.m.s.journal.Path())
	if err := os.Mkdir(path, 0o700); err != nil { // the report cannot be written there
		t.Fatal(err)
	}
	h.key("enter", "y")
	c := h.top().(*closeScreen)
	if c.err == nil || c.path != "" || !h.m.s.inc.Closed {
		t.Fatalf("first try: err %v, path %q, closed %v", c.err, c.path, h.m.s.inc.Closed)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	h.key("enter", "y")
	if c.err != nil || c.path != path {
		t.Fatalf("second try: err %v, path %q", c.err, c.path)
	}
}

// The step list gives up a row for each line the escalation and the plan warning take,
// both of them when both wrap.
func TestScenarioViewFitsWithWrappedEscalationAndWarning(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	sc := *h.m.s.scenario
	sc.RTO = time.Minute // the steps' budgets are over it: a plan warning
	h.m.s.scenario = &sc
	for _, w := range []int{40, 50, 60, 70} {
		for bodyH := 14; bodyH <= 20; bodyH++ {
			body := h.top().view(w, bodyH)
			if !strings.Contains(body, "! the steps") {
				t.Fatalf("no plan warning:\n%s", body)
			}
			// the layout keeps its last line free, wrapped escalation and warning or not
			if n := strings.Count(strings.TrimRight(body, "\n"), "\n") + 1; n > bodyH-1 {
				t.Errorf("%d×%d: %d lines:\n%s", w, bodyH, n, body)
			}
		}
	}
}

// Close releases the incident's journal once the console has ended.
func TestCloseClosesTheJournal(t *testing.T) {
	h := newHarness(t, false)
	if err := h.m.Close(); err != nil {
		t.Fatalf("no journal yet: %v", err)
	}
	h.startIncident()
	if err := h.m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.m.s.journal.Record(checklists.Event{Type: checklists.EventNote, Note: "late"}); err == nil {
		t.Fatal("the journal is still open")
	}
}

// The progress screen follows a restore's events in order: a pg_restore line (tables,
// no bytes) between two samples never sets the figures back to zero.
func TestProgressKeepsFiguresAcrossToolLines(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	p := newProgressScreen(h.m.s, 4, testPlan())
	p.running, p.started = true, t0
	p.events = make(chan tea.Msg, 10)
	for range 10 {
		p.events <- nil
	}
	h.m.stack = append(h.m.stack, p)
	h.size(80, 24)
	events := []recovery.Event{
		{Stage: recovery.StageStream, Read: 100 << 20, Size: 512 << 20, Rate: 40 << 20, ETA: 10 * time.Second, Decompressed: 300 << 20, TablesDone: 3, TablesTotal: 42},
		{Stage: recovery.StageStream, Message: `pg_restore: processing data for table "public.Guild"`, Tool: true, TablesDone: 4, TablesTotal: 42, Table: "public.Guild"},
		{Stage: recovery.StageStream, Read: 200 << 20, Size: 512 << 20, Rate: 48 << 20, ETA: 7 * time.Second, Decompressed: 600 << 20, TablesDone: 4, TablesTotal: 42, Table: "public.Guild"},
		{Stage: recovery.StageStream, Message: `pg_restore: processing data for table "public.User"`, Tool: true, TablesDone: 5, TablesTotal: 42, Table: "public.User"},
	}
	want := []string{"Read 100.0 MiB of 512.0 MiB", "Read 100.0 MiB of 512.0 MiB", "Read 200.0 MiB of 512.0 MiB", "Read 200.0 MiB of 512.0 MiB"}
	tables := []string{"Tables 3/42", "Tables 4/42 · now public.Guild", "Tables 4/42 · now public.Guild", "Tables 5/42 · now public.User"}
	for i, e := range events {
		h.send(restoreProgressMsg(e))
		screen := ansi.Strip(h.screen())
		if !strings.Contains(screen, want[i]) || !strings.Contains(screen, tables[i]) {
			t.Fatalf("after event %d the screen lacks %q or %q:\n%s", i, want[i], tables[i], screen)
		}
	}
}

// The close screen counts each check by its latest result: a health check that failed and
// then passed is a pass, not both.
func TestCloseCountsChecksAsLastRun(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	s := h.m.s
	s.run.Record(
		checklists.Event{Type: checklists.EventCheckResult, Step: 7, Title: "health https://api.example.com/health", Result: checklists.CheckFail, Detail: "HTTP 503"},
		checklists.Event{Type: checklists.EventCheckResult, Step: 7, Title: "health https://api.example.com/health", Result: checklists.CheckPass, Detail: "HTTP 200"},
	)
	s.inc = s.journal.Incident()
	h.key("x")
	if screen := ansi.Strip(h.screen()); !strings.Contains(screen, "1 checks, as last run: 1 passed, 0 failed") {
		t.Errorf("close screen:\n%s", screen)
	}
}

// Roles the archive needs are missing: pre-flight offers to restore without ownership.
func TestPreflightOffersNoOwner(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	p := newPreflightScreen(h.m.s, 4, storage.NewDir("local", t.TempDir()), testPlan().Source.Backup)
	h.m.stack = append(h.m.stack, p)
	p.state, p.attempt = preflightChecking, 1
	h.send(planPreparedMsg{attempt: 1, err: fmt.Errorf("%w: roles the archive's objects belong to do not exist on db:5432: app_owner (create them, or restore with --no-owner)", recovery.ErrOwners)})
	if p.state != preflightFailed || !strings.Contains(h.screen(), "o restore without ownership") {
		t.Fatalf("the refusal does not offer --no-owner:\n%s", h.screen())
	}
	h.key("o")
	if !p.noOwner || p.attempt != 2 {
		t.Errorf("o did not prepare again without ownership: noOwner %v attempt %d", p.noOwner, p.attempt)
	}
}

// realisticChecks are the checks of a restore as drconsole runs them on the application's
// schema, one table short of its rows.
func realisticChecks() []recovery.CheckResult {
	return []recovery.CheckResult{
		{Name: "restored database reachable", Status: recovery.CheckPass, Blocking: true},
		{Name: "tables restored", Status: recovery.CheckPass, Blocking: true, Expected: "42 with data", Actual: "42"},
		{Name: "tables of spywatcher in the copy", Status: recovery.CheckPass, Actual: "42"},
		{Name: "rows of every table", Status: recovery.CheckFail, Blocking: true, Expected: "42 tables as in the archive", Actual: "41 tables, 1203397 rows, as in the archive",
			Detail: "public.Guild: 120 rows in the archive, 119 restored"},
		{Name: `users ("User" rows)`, Status: recovery.CheckPass, Expected: "10234", Actual: "10234"},
		{Name: `guilds ("Guild" rows)`, Status: recovery.CheckPass, Actual: "119"},
		{Name: `API keys ("ApiKey" rows)`, Status: recovery.CheckWarn, Expected: "0", Actual: "812", Detail: "live database spywatcher has 0; the backup has 812"},
		{Name: "admin users", Status: recovery.CheckPass, Actual: "20"},
		{Name: `"Session" table exists`, Status: recovery.CheckPass, Actual: "true"},
		{Name: "database size", Status: recovery.CheckInfo, Actual: "85 MB"},
		{Name: "pg_stat_database", Status: recovery.CheckInfo, Actual: "backends=1 commits=75 rollbacks=0 conflicts=0 deadlocks=0"},
		{Name: "WAL archiving (pg_stat_archiver)", Status: recovery.CheckInfo, Actual: "archived=120 failed=0 last=000000010000000000000042"},
	}
}

// tableRows are 42 tables as a restore counts them: the archive's, the copy's and the live
// database's rows; "Guild" lost a row in the copy, the live "ApiKey" lost them all.
func tableRows() []recovery.TableRows {
	rows := []recovery.TableRows{
		{Name: "public.ApiKey", Archive: 812, Restored: 812, Live: 0},
		{Name: "public.Event", Archive: 1190000, Restored: 1190000, Live: 1190412},
		{Name: "public.Guild", Archive: 120, Restored: 119, Live: 120},
		{Name: "public.User", Archive: 10234, Restored: 10234, Live: 10240},
	}
	for i := range 38 {
		rows = append(rows, recovery.TableRows{Name: fmt.Sprintf("audit.log_%02d", i), Archive: int64(i * 7), Restored: int64(i * 7), Live: int64(i * 7)})
	}
	rows[20].Name = "reporting.a_table_name_long_enough_to_need_more_than_one_screen_width_of_its_own"
	return rows
}

// The checks screen shows every table's rows after a restore: the one whose copy differs
// first and marked, the rest a pgup/pgdn away, each table on a page, none cut silently.
func TestChecksShowRowsOfEveryTable(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	r := &recovery.Restored{Plan: testPlan(), Database: "spywatcher_restore_20240125_140000", Read: 512 << 20, Tables: 42, Duration: 95 * time.Second,
		Checks: realisticChecks(), Rows: tableRows()}
	h.send(pushMsg{newChecksScreen(h.m.s, 4, h.restored(r, nil), recovery.ErrChecksFailed)})
	h.both("checks_rows")

	h.size(80, 24)
	screen := ansi.Strip(h.screen())
	for _, want := range []string{
		"Rows: 1 of 42 tables DIFFER from the archive (listed first): public.Guild",
		"  DIFFERS   public.Guild                                 120       119       120",
		"tables 1–", "of 42 · pgup/pgdn for more",
		"checks 1–", "of 12 · ↑/↓ for more",
	} {
		if !strings.Contains(screen, want) {
			t.Errorf("80×24 lacks %q:\n%s", want, screen)
		}
	}
	// Page by page, every table is shown once, its name whole or ending in …
	seen := map[string]bool{}
	for page := 0; page < 42; page++ {
		for _, l := range strings.Split(ansi.Strip(h.screen()), "\n") {
			for _, tr := range r.Rows {
				cut := strings.HasPrefix(tr.Name, "reporting.") && strings.Contains(l, " reporting.a_table_name_long") && strings.Contains(l, "… ")
				if strings.Contains(l, " "+tr.Name+" ") || cut {
					seen[tr.Name] = true
				}
			}
		}
		if strings.Contains(h.screen(), "of 42 · pgup/pgdn") && strings.Contains(h.screen(), "–42 of 42") {
			break
		}
		h.key("pgdown")
	}
	if len(seen) != len(r.Rows) {
		for _, tr := range r.Rows {
			if !seen[tr.Name] {
				t.Errorf("table %s never shown", tr.Name)
			}
		}
	}
	for range 42 {
		h.key("pgup")
	}
	if screen := ansi.Strip(h.screen()); !strings.Contains(screen, "tables 1–") {
		t.Errorf("pgup does not go back to the first tables:\n%s", screen)
	}
	if !strings.Contains(ansi.Strip(h.screen()), "pgup/pgdn scroll rows") {
		t.Errorf("the keys do not say how to scroll the rows:\n%s", ansi.Strip(h.screen()))
	}
}

// The progress screen follows the parallel engine through its phases: the schema, the
// rows of the table being loaded (kept across samples that do not carry them), the indexes
// built of those in the archive, and the tables done.
func TestProgressShowsPhasesRowsAndIndexes(t *testing.T) {
	h := newHarness(t, false)
	h.startIncident()
	p := newProgressScreen(h.m.s, 4, testPlan())
	p.running, p.started = true, t0
	p.events = make(chan tea.Msg, 20)
	for range 20 {
		p.events <- nil
	}
	h.m.stack = append(h.m.stack, p)
	h.m.s.now = t0.Add(2 * time.Minute)
	h.size(80, 24)
	sample := func(read int64, done int, table string) recovery.Event {
		return recovery.Event{Stage: recovery.StageStream, Read: read << 20, Size: 512 << 20, Rate: 40 << 20, ETA: time.Minute, Decompressed: 3 * read << 20,
			TablesDone: done, TablesTotal: 3, Table: table}
	}
	steps := []struct {
		e    recovery.Event
		want []string
		not  []string
	}{
		{recovery.Event{Stage: recovery.StageStream, Phase: "pre-data", TablesTotal: 3, Message: "parallel engine: 4 connections, 8 MiB chunks; pg_restore creates the schema (31 entries)"},
			[]string{"Phase [pre-data] › load › post-data", "Tables 0/3"}, []string{"Indexes"}},
		{sample(10, 0, ""), []string{"Phase [pre-data] › load › post-data", "Read 10.0 MiB of 512.0 MiB"}, nil},
		{recovery.Event{Stage: recovery.StageStream, Phase: "load", TablesTotal: 3, IndexesTotal: 5, Message: "loading 3 tables over 4 connections; building 5 indexes and constraints as their tables are loaded"},
			[]string{"Phase ✓ pre-data › [load] › post-data", "Indexes and constraints 0/5 built"}, nil},
		{recovery.Event{Stage: recovery.StageStream, Phase: "load", Table: "public.Event", Rows: 250000, TablesTotal: 3, IndexesTotal: 5},
			[]string{"Tables 0/3 · now public.Event, 250,000 rows loaded"}, nil},
		{sample(200, 0, "public.Event"), []string{"Read 200.0 MiB", "now public.Event, 250,000 rows loaded", "Phase ✓ pre-data › [load] › post-data"}, nil},
		{recovery.Event{Stage: recovery.StageStream, Phase: "load", Table: "public.Event", Rows: 1200000, TablesTotal: 3, IndexesTotal: 5},
			[]string{"now public.Event, 1,200,000 rows loaded"}, nil},
		{recovery.Event{Stage: recovery.StageStream, Phase: "load", Table: "public.User", Rows: 500, TablesDone: 1, TablesTotal: 3, IndexesTotal: 5, Message: "loaded public.User: 500 rows"},
			[]string{"Tables 1/3 · now public.User, 500 rows loaded"}, []string{"1,200,000"}},
		{sample(300, 1, "public.Guild"), []string{"Tables 1/3 · now public.Guild"}, []string{"rows loaded"}},
		{recovery.Event{Stage: recovery.StageStream, Phase: "load", IndexesDone: 2, IndexesTotal: 5, TablesDone: 2, TablesTotal: 3, Message: `built index "User_pkey" (2 of 5)`},
			[]string{"Indexes and constraints 2/5 built", "Tables 2/3"}, nil},
		{recovery.Event{Stage: recovery.StageStream, Phase: "post-data", TablesDone: 3, TablesTotal: 3, IndexesDone: 4, IndexesTotal: 5,
			Message: "loaded every table: 1200620 rows in 3 tables in 41.2s; 4 of 5 indexes and constraints built, building the rest"},
			[]string{"Phase ✓ pre-data › ✓ load › [post-data]", "Tables 3/3", "Indexes and constraints 4/5 built"}, []string{"now public"}},
	}
	for i, st := range steps {
		st.e.Time = t0.Add(time.Duration(i) * time.Second)
		h.send(restoreProgressMsg(st.e))
		screen := ansi.Strip(h.screen())
		for _, want := range st.want {
			if !strings.Contains(screen, want) {
				t.Fatalf("after event %d the screen lacks %q:\n%s", i, want, screen)
			}
		}
		for _, not := range st.not {
			if strings.Contains(screen, not) {
				t.Fatalf("after event %d the screen still shows %q:\n%s", i, not, screen)
			}
		}
	}
	h.both("progress_parallel")
}

// A drill console (drconsole --drill) never offers a real incident to resume: resumed,
// its commands would run and its restore swap for real.
func TestDrillConsoleDoesNotOfferARealIncident(t *testing.T) {
	h := newHarness(t, false)
	h.send(h.top().init()())
	h.key("enter", "enter") // a real incident, left open
	h.m.s.journal.Close()
	d := &harness{t: t, now: t0.Add(5 * time.Minute)}
	d.m = New(Options{StateDir: h.m.s.opt.StateDir, Theme: PlainTheme(), Operator: "alice", Drill: true, Now: func() time.Time { return d.now }})
	d.send(d.top().init()())
	scr := d.screen()
	if strings.Contains(scr, "Resume incident") || !strings.Contains(scr, "1 real incident(s) open: not offered in a drill") {
		t.Fatalf("a drill console offers a real incident:\n%s", scr)
	}
	d.key("enter")
	if _, ok := d.top().(*pickerScreen); !ok || !d.m.s.drill {
		t.Fatalf("the only choice is a new drill:\n%s", d.screen())
	}
}
