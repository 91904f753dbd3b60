package ui

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"drconsole/recovery"
	"drconsole/storage"
	"drconsole/wal"
)

// openPITR goes from the scenario view to the restore step and presses t.
func (h *harness) openPITR() *pitrScreen {
	h.t.Helper()
	h.key("down", "down", "down", "enter")
	if !strings.Contains(ansi.Strip(h.screen()), "t: a point in time instead") {
		h.t.Errorf("the restore step does not offer a point in time:\n%s", h.screen())
	}
	h.key("t")
	p, ok := h.top().(*pitrScreen)
	if !ok {
		h.t.Fatalf("t on the restore step: top %T, want the point-in-time screen:\n%s", h.top(), h.screen())
	}
	return p
}

// Where the locations hold dumps only, the screen says plainly why a point in time
// cannot be had and what to set up.
func TestPITRUnavailableWhereOnlyDumps(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "spywatcher_full_20240125_130000.dump.gz"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, false)
	h.m.s.opt.Locations = []storage.Location{storage.NewDir("local", dir)}
	h.startIncident()
	h.openPITR()
	screen := ansi.Strip(h.screen())
	for _, want := range []string{"Point-in-time recovery is unavailable: no location (local) holds a base backup", "drconsole wal-push %p", "drconsole basebackup"} {
		if !strings.Contains(screen, want) {
			t.Errorf("the screen lacks %q:\n%s", want, screen)
		}
	}
	h.both("pitr_unavailable")
}

func testReaches() []wal.Reach {
	base := wal.BaseBackup{Name: "spywatcher_base_20240125_020003.tar.zst.gpg", Location: "local", Timeline: 1, StartWAL: "000000010000000000000002",
		StopTime: time.Date(2024, 1, 25, 2, 0, 5, 0, time.UTC), Version: "15.5", Major: 15}
	return []wal.Reach{
		{Location: "primary", Error: "location unreachable: dial tcp: i/o timeout"},
		{Location: "local", Bases: []wal.BaseBackup{base}, From: base.StopTime, To: time.Date(2024, 1, 25, 13, 58, 12, 0, time.UTC)},
	}
}

// The moment is typed (a typo and a time the archive cannot reach each get one line),
// the plan is shown with its base backup, segments and RPO, and the database's name is
// asked before anything starts.
func TestPITRTakesTheMomentAndShowsThePlan(t *testing.T) {
	h := newHarness(t, false)
	reaches := testReaches()
	var asked []time.Time
	h.m.s.opt.Conn = &recovery.Conn{Host: "db.internal", Port: 5432, User: "postgres", Database: "spywatcher"}
	h.m.s.opt.PITR = func(_ context.Context, target time.Time) (*wal.PITRPlan, error) {
		asked = append(asked, target)
		if target.Before(reaches[1].From) {
			return nil, fmt.Errorf("%w: %s is before every base backup: the oldest, %s, is consistent from 2024-01-25 02:00:05 UTC; choose a later time",
				wal.ErrTarget, target.Format("2006-01-02 15:04:05 UTC"), reaches[1].Bases[0].Name)
		}
		return &wal.PITRPlan{Base: reaches[1].Bases[0], Timeline: 1, Path: []string{"timeline 1 from the base backup (0/2000028)"},
			Segments: 212, Newest: "0000000100000000000000D5", Reaches: reaches[1].To}, nil
	}
	h.startIncident()
	p := h.openPITR()
	h.send(pitrReachesMsg{reaches})
	if p.state != pitrEditing || p.field.Value() != "2024-01-25 14:00:00" {
		t.Fatalf("state %v, field %q: want the moment asked, offered as the incident's start", p.state, p.field.Value())
	}
	h.both("pitr_time")

	clear := func() {
		for range len(p.field.Value()) {
			h.key("backspace")
		}
	}
	clear()
	h.typeText("2024-01-25 13:6O")
	h.key("enter")
	if p.state != pitrEditing || len(asked) != 0 || !strings.Contains(h.m.status, `"2024-01-25 13:6O" is not a time`) {
		t.Errorf("a typo: state %v, planned %v, status %q", p.state, asked, h.m.status)
	}
	clear()
	h.typeText("2024-01-24 23:00:00")
	h.key("enter")
	if screen := ansi.Strip(h.screen()); p.state != pitrEditing || !strings.Contains(screen, "✗ refused before starting: the recovery target cannot be reached: 2024-01-24 23:00:00 UTC is before every base backup") {
		t.Errorf("a time before the base backup: state %v, want it said under the field:\n%s", p.state, screen)
	}
	h.both("pitr_refused")
	clear()
	h.typeText("2024-01-25 13:40:00")
	h.key("enter")
	if p.state != pitrConfirm {
		t.Fatalf("state %v after a reachable time:\n%s", p.state, h.screen())
	}
	screen := ansi.Strip(h.screen())
	for _, want := range []string{"spywatcher_base_20240125_020003.tar.zst.gpg from local", "212 segments", "RPO         20m", "within the scenario's", "type spywatcher to start:"} {
		if !strings.Contains(screen, want) {
			t.Errorf("the plan lacks %q:\n%s", want, screen)
		}
	}
	h.both("pitr_plan")
	h.typeText("spywatch")
	h.key("enter")
	if p.state != pitrConfirm || !strings.Contains(h.m.status, `That is not "spywatcher"`) {
		t.Errorf("a wrong name started the recovery: state %v, status %q", p.state, h.m.status)
	}
}

// The replay's progress: phases, segments fetched and replayed, the replay's time
// against the target.
func TestPITRProgressShowsTheReplay(t *testing.T) {
	h := newHarness(t, false)
	reaches := testReaches()
	h.m.s.opt.Conn = &recovery.Conn{Host: "db.internal", Port: 5432, User: "postgres", Database: "spywatcher"}
	h.startIncident()
	p := h.openPITR()
	h.send(pitrReachesMsg{reaches})
	p.target = time.Date(2024, 1, 25, 13, 40, 0, 0, time.UTC)
	p.plan = &wal.PITRPlan{Base: reaches[1].Bases[0], Timeline: 1, Segments: 212, Newest: "0000000100000000000000D5"}
	p.state, p.started, p.events = pitrRecovering, t0, make(chan tea.Msg, 8)
	for _, m := range []any{
		pitrLogMsg("unpacking spywatcher_base_20240125_020003.tar.zst.gpg from local into /tmp/drconsole-pitr-1/pgdata"),
		pitrProgressMsg{Phase: wal.PhaseUnpacking, Planned: 212},
		pitrLogMsg("starting the server on /tmp/drconsole-pitr-1/pgdata with restore_command reading the archive"),
		pitrProgressMsg{Phase: wal.PhaseStarting, Planned: 212},
		pitrProgressMsg{Phase: wal.PhaseReplaying, Fetched: 143, Replayed: 141, Segment: "00000001000000000000008E", Planned: 212,
			Replay: time.Date(2024, 1, 25, 11, 17, 42, 0, time.UTC), Target: p.target},
	} {
		p.update(m)
	}
	h.now = t0.Add(3*time.Minute + 12*time.Second)
	h.m.s.now = h.now
	screen := ansi.Strip(h.screen())
	for _, want := range []string{"✓ unpacking › ✓ starting › [replaying] › promoted › dumping", "fetched 143 · replayed 141 of about 212",
		"Replayed to 2024-01-25 11:17:42 UTC (2h22m18s before the target)"} {
		if !strings.Contains(screen, want) {
			t.Errorf("the progress lacks %q:\n%s", want, screen)
		}
	}
	h.both("pitr_progress")
	if fmt.Sprint(p.phases) != "[unpacking starting replaying]" {
		t.Errorf("phases seen: %v", p.phases)
	}
}

// The ransomware scenario's restore asks for the moment just before the attack.
func TestPITRRansomwareAsksForJustBeforeTheAttack(t *testing.T) {
	h := newHarness(t, false)
	sc, ok := h.m.s.opt.Runbook.Scenario("ransomware")
	if !ok {
		t.Fatal("no ransomware scenario in the default runbook")
	}
	h.m.s.scenario = sc
	if got := newPITRScreen(h.m.s, 1).hint(200); !strings.HasPrefix(got, "Just before the attack") {
		t.Errorf("the ransomware hint: %q", got)
	}
}
