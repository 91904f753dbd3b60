package ui

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"drconsole/checklists"
	"drconsole/recovery"
	"drconsole/wal"
)

// drillHarness is a console opened as drconsole drill or drill --tabletop opens it: a
// drill made for one scenario.
func drillHarness(t *testing.T, stateDir, scenario string, sandbox bool) *harness {
	h := &harness{t: t, now: t0}
	h.m = New(Options{StateDir: stateDir, Theme: PlainTheme(), Operator: "alice", Host: "bastion", Drill: true, Sandbox: sandbox,
		Scenario: scenario, Now: func() time.Time { return h.now }})
	return h
}

// A sandbox drill's point in time is offered at its first sign of trouble, which the
// screen says, and not at the incident's start: that is past the fault, where the
// sandbox's archive ends, and would be refused.
func TestPITRInADrillOffersTheFirstSignOfTrouble(t *testing.T) {
	alert := t0.Add(-3*time.Minute - 7*time.Second)
	h := drillHarness(t, t.TempDir(), "database-corruption", true)
	h.m.s.opt.Alert = alert
	h.m.s.opt.Conn = &recovery.Conn{Host: "/tmp/drconsole-drill-1", Port: 5432, User: "postgres", Database: "spywatcher"}
	h.m.s.opt.PITR = func(context.Context, time.Time) (*wal.PITRPlan, error) {
		return nil, errors.New("not planned in this test")
	}
	h.startIncident()
	p := h.openPITR()
	h.send(pitrReachesMsg{testReaches()})
	if got := p.field.Value(); got != "2024-01-25 13:56:53" {
		t.Errorf("offered %q, want the first sign of trouble, 2024-01-25 13:56:53", got)
	}
	h.both("pitr_time_drill")
	screen := ansi.Strip(h.screen())
	for _, want := range []string{"The first sign of trouble was seen at 2024-01-25 13:56:53 UTC.", "Offered: the first sign of trouble."} {
		if !strings.Contains(strings.Join(strings.Fields(screen), " "), want) {
			t.Errorf("the screen lacks %q:\n%s", want, screen)
		}
	}

	// An incident that recovered to a point in time already offers that point again,
	// drill or not: it is the operator's own better guess.
	target := t0.Add(-20 * time.Minute)
	for _, drill := range []bool{true, false} {
		h := newHarness(t, drill)
		h.m.s.opt.Alert = alert
		h.m.s.opt.PITR = func(context.Context, time.Time) (*wal.PITRPlan, error) {
			return nil, errors.New("not planned in this test")
		}
		h.startIncident()
		h.m.s.journal.Record(checklists.Event{Type: checklists.EventPITRRecovered, Step: 4, Result: checklists.ResultOK,
			PITR: &checklists.PITRPoint{TargetKind: "time", TargetTime: &target, BaseBackup: "spywatcher_base_20240125_020003.tar.zst.gpg"}})
		h.m.s.inc = h.m.s.journal.Incident()
		p := h.openPITR()
		h.send(pitrReachesMsg{testReaches()})
		if got := p.field.Value(); got != "2024-01-25 13:40:00" {
			t.Errorf("drill %v: offered %q, want the incident's last target", drill, got)
		}
	}
}

// A closed drill's close screen shows where its report is kept for good (the state
// directory's drills/, not the sandbox, which goes), and a path too long for a line is
// broken after a slash, never at a hyphen inside its name.
func TestClosedDrillShowsTheReportKept(t *testing.T) {
	h := drillHarness(t, t.TempDir(), "database-corruption", true)
	kept := "/home/trainee/.local/state/drconsole/drills/20240125T140000.000000000Z-database-corruption-console"
	text := "drill     Database Corruption (console, small, seed 3)\n" +
		"RTO       0:12 to the swap, of 2h: met\n" +
		"score     PASS: the data is right and the RTO met\n" +
		"kept      " + kept + ".json\n"
	h.m.s.opt.Score = func() (Scored, error) { return Scored{Text: text, Report: kept + ".md"}, nil }
	h.startIncident()
	h.key("x", "enter", "y")
	c, ok := h.top().(*closeScreen)
	if !ok || !c.scored {
		t.Fatalf("the drill is not scored on its close screen:\n%s", h.screen())
	}
	h.both("close_scored_drill")
	screen := trimLines(ansi.Strip(h.screen())) // 120×40, as both leaves it
	h.size(80, 24)
	small := trimLines(ansi.Strip(h.screen()))
	for _, scr := range []string{screen, small} {
		if strings.Contains(scr, c.path) || strings.Contains(scr, "/incidents/") {
			t.Errorf("the close screen shows the sandbox's report, which goes with it:\n%s", scr)
		}
		for _, want := range []string{"20240125T140000.000000000Z-database-corruption-console.md", "20240125T140000.000000000Z-database-corruption-console.json"} {
			if !strings.Contains(scr, want) {
				t.Errorf("the close screen lacks the whole name %q:\n%s", want, scr)
			}
		}
	}
	for _, want := range []string{"report    /home/trainee/.local/state/drconsole/drills/\n          20240125T140000.000000000Z-database-corruption-console.md\n", "kept      /home/trainee/.local/state/drconsole/drills/\n"} {
		if !strings.Contains(small, want) {
			t.Errorf("at 80×24 the path is not broken after its directory (%q):\n%s", want, small)
		}
	}
}

func TestWrapAtSpacesBreaksPathsAtSlashes(t *testing.T) {
	for _, c := range []struct {
		in   string
		w    int
		want string
	}{
		{"kept at /a/bb/ccc-dd-ee.json now", 40, "kept at /a/bb/ccc-dd-ee.json now"},
		{"kept at /var/lib/drconsole/drills/2024-database-corruption.json", 30, "kept at /var/lib/drconsole/\ndrills/\n2024-database-corruption.json"},
		{"x /aaaaaaaaaaaaaaaaaaaa-bbbbbbbb", 12, "x /\naaaaaaaaaaaa\naaaaaaaa-bbb\nbbbbb"},
		{"two  spaces stay", 40, "two  spaces stay"},
	} {
		if got := wrapAtSpaces(c.in, c.w); got != c.want {
			t.Errorf("wrapAtSpaces(%q, %d):\n%s\nwant\n%s", c.in, c.w, got, c.want)
		}
	}
}

func trimLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}

// A drill made for one scenario starts that scenario first: an open drill of another
// scenario is not offered at all (its first enter resumed it), and an open one of the
// same scenario is offered after it, saying what it is.
func TestDrillOfOneScenarioStartsItsOwn(t *testing.T) {
	state := t.TempDir()
	rb := checklists.Default()
	var open []string
	for _, id := range []string{"database-corruption", "ransomware"} {
		sc, _ := rb.Scenario(id)
		j, err := checklists.StartIncident(checklists.StartOptions{StateDir: state, Runbook: rb, Scenario: sc, Drill: true, Operator: "alice", Now: func() time.Time { return t0.Add(-time.Hour) }})
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, j.Incident().ID)
		j.Close()
	}
	h := drillHarness(t, state, "ransomware", false)
	h.send(h.top().init()())
	h.both("start_drill_of_one_scenario")
	screen := ansi.Strip(h.screen())
	for _, want := range []string{"> Start a new drill of Ransomware Attack", "  Resume this scenario's open drill instead: started 1h ago, 0/7 steps done",
		"1 open drill(s) of other scenarios: not offered"} {
		if !strings.Contains(screen, want) {
			t.Errorf("the start screen lacks %q:\n%s", want, screen)
		}
	}
	if strings.Contains(screen, "Database Corruption") {
		t.Errorf("a drill of ransomware offers the open corruption drill:\n%s", screen)
	}
	h.key("enter", "enter")
	if h.m.s.inc == nil || h.m.s.inc.Scenario != "ransomware" || h.m.s.inc.ID == open[1] {
		t.Fatalf("the first enters did not start a new ransomware drill: %+v", h.m.s.inc)
	}

	h.m.s.journal.Close()
	r := drillHarness(t, state, "ransomware", false)
	r.send(r.top().init()())
	r.key("down", "down", "enter") // the new one is listed first, the older after it
	if r.m.s.inc == nil || r.m.s.inc.ID != open[1] {
		t.Fatalf("down, enter did not resume a ransomware drill: %+v\n%s", r.m.s.inc, r.screen())
	}
}

// At 80×24 every step's row of every scenario fits, its state whole: an untimed step
// whose words are too long for the budget column (the regional outage's step 7) is said
// under the list.
func TestScenarioViewFitsEveryScenarioAt80x24(t *testing.T) {
	for _, sc := range checklists.Default().Scenarios {
		h := newHarness(t, true)
		h.send(h.top().init()())
		h.key("enter")
		for range 4 {
			h.key("up")
		}
		for h.m.s.opt.Runbook.Scenarios[h.top().(*pickerScreen).cur.i].ID != sc.ID {
			h.key("down")
		}
		h.key("enter")
		h.size(80, 24)
		screen := ansi.Strip(h.screen())
		for _, l := range strings.Split(screen, "\n") {
			if strings.HasSuffix(l, "…") && !strings.HasPrefix(l, "↑/↓") {
				t.Errorf("%s: a line is cut:\n%q\n%s", sc.ID, l, screen)
			}
		}
		for i := range sc.Steps {
			if !strings.Contains(screen, itoa(i+1)+".  ") {
				t.Errorf("%s: step %d is not listed:\n%s", sc.ID, i+1, screen)
			}
		}
		if sc.ID == "regional-outage" {
			if !strings.Contains(screen, "7.  Plan for Failback") || !strings.Contains(screen, "untimed  pending") || !strings.Contains(screen, "7. untimed: When primary region recovers") {
				t.Errorf("the regional outage's step 7:\n%s", screen)
			}
			h.both("scenario_regional")
		}
		h.m.s.journal.Close()
	}
}
