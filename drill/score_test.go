package drill

import (
	"strings"
	"testing"
	"time"

	"drconsole/checklists"
)

// tabletop records a corruption tabletop through a real journal: steps 1 and 2 done,
// the checks step skipped, an escalation inject shown and acknowledged (answered or
// not), the checklist ticked but one item, then closed.
func tabletop(t *testing.T, answered bool) (*checklists.Incident, *checklists.Runbook, *checklists.Scenario) {
	t.Helper()
	rb := checklists.Default()
	sc, _ := rb.Scenario(Corruption)
	j, err := checklists.Start(t.TempDir(), sc, true, "trainee", "bastion")
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	checks := 0
	for i, st := range sc.Steps {
		if st.Kind == checklists.KindChecks {
			checks = i + 1
		}
	}
	rec := func(e checklists.Event) {
		t.Helper()
		if err := j.Record(e); err != nil {
			t.Fatal(err)
		}
	}
	for n := 1; n <= 2; n++ {
		rec(checklists.Event{Type: checklists.EventStepStarted, Step: n, Title: sc.Steps[n-1].Title})
		rec(checklists.Event{Type: checklists.EventStepDone, Step: n})
	}
	rec(checklists.Event{Type: checklists.EventStepSkipped, Step: checks, Note: "no time"})
	rec(checklists.Event{Type: checklists.EventInject, Ref: "inject-1", Title: "the DBA is unreachable: escalate", Kind: "escalate", Level: 2, Result: checklists.ResultShown})
	rec(checklists.Event{Type: checklists.EventInjectAck, Ref: "inject-1", Who: "trainee"})
	if answered {
		rec(checklists.Event{Type: checklists.EventEscalationAck, Level: 2, Title: rb.Escalation[1].Role, Result: "declined", Who: "trainee"})
	}
	for _, item := range rb.PostRecovery[1:] {
		rec(checklists.Event{Type: checklists.EventChecklistTicked, Title: item, Who: "trainee"})
	}
	if err := j.CloseIncident("drill-complete", ""); err != nil {
		t.Fatal(err)
	}
	return j.Incident(), rb, sc
}

func TestScoreNamesEachMistakeOfATabletop(t *testing.T) {
	for _, answered := range []bool{false, true} {
		inc, rb, sc := tabletop(t, answered)
		c := Score(ScoreInput{Mode: ModeTabletop, Incident: inc, Runbook: rb, Scenario: sc, Now: time.Now()})
		text := c.Text()
		want := []string{
			"skipped step", // the checks
			"1 of 11 post-recovery checklist items left unticked: " + rb.PostRecovery[0],
		}
		escalation := `the inject "the DBA is unreachable: escalate" made the escalation to Team Lead due, and it was never paged or declined`
		if !answered {
			want = append(want, escalation)
		} else if strings.Contains(text, escalation) {
			t.Errorf("an escalation declined is scored as unanswered:\n%s", text)
		}
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("answered %v: the scorecard lacks %q:\n%s", answered, w, text)
			}
		}
		if c.Pass || !strings.Contains(text, "score     FAIL") || c.DataChecked || len(c.Steps) != len(sc.Steps) {
			t.Errorf("answered %v: pass %v, data checked %v, %d steps:\n%s", answered, c.Pass, c.DataChecked, len(c.Steps), text)
		}
		if !c.RTOMet || c.Steps[0].Status != "done" || c.Steps[2].Status != "pending" || c.Steps[4].Status != "skipped" {
			t.Errorf("answered %v: the times are wrong: %+v", answered, c.Steps)
		}
		if strings.Contains(text, "never recovered") {
			t.Errorf("a tabletop restores nothing and is not blamed for it:\n%s", text)
		}
	}
}

// A drill nobody started scores a failure that says so, and a scorecard survives its
// round trip through the drills directory.
func TestScoreOfNothingAndItsRecord(t *testing.T) {
	rb := checklists.Default()
	sc, _ := rb.Scenario(Corruption)
	c := Score(ScoreInput{Mode: ModeConsole, Runbook: rb, Scenario: sc, Now: time.Now()})
	if c.Pass || len(c.Mistakes) == 0 || c.Mistakes[0] != "no drill was started" {
		t.Errorf("nothing done: %+v", c)
	}
	dir := t.TempDir()
	if _, err := c.Save(dir, ""); err != nil {
		t.Fatal(err)
	}
	cards, errs := LoadScorecards(dir)
	if len(errs) != 0 || len(cards) != 1 || cards[0].Text() != c.Text() {
		t.Errorf("read back: %v %v\n%s\nwant\n%s", errs, len(cards), cards[0].Text(), c.Text())
	}
}

// recovered records a console drill of database corruption started at start, whose data
// came back from backup (a dump's name) or, when point is set, from a recovery to a point
// in time that reached point; the copy is swapped in and the drill closed, every
// checklist item ticked.
func recovered(t *testing.T, start time.Time, backup string, point time.Time) (*checklists.Incident, *checklists.Runbook, *checklists.Scenario) {
	t.Helper()
	rb := checklists.Default()
	sc, _ := rb.Scenario(Corruption)
	now := start
	j, err := checklists.StartIncident(checklists.StartOptions{StateDir: t.TempDir(), Runbook: rb, Scenario: sc, Drill: true, Operator: "trainee", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	rec := func(after time.Duration, e checklists.Event) {
		t.Helper()
		now = now.Add(after)
		if err := j.Record(e); err != nil {
			t.Fatal(err)
		}
	}
	if !point.IsZero() {
		target := point.Truncate(time.Second).Add(time.Second)
		rec(10*time.Minute, checklists.Event{Type: checklists.EventPITRRecovered, Step: 4, Result: checklists.ResultOK, Database: "spywatcher",
			PITR: &checklists.PITRPoint{TargetKind: "time", TargetTime: &target, BaseBackup: "spywatcher_base_20240125_020003.tar.zst.gpg", RecoveryPoint: &point}})
	}
	rec(time.Minute, checklists.Event{Type: checklists.EventRestoreStarted, Step: 4, Backup: backup, Database: "spywatcher", Mode: "swap"})
	rec(5*time.Minute, checklists.Event{Type: checklists.EventSwapStarted, Database: "spywatcher"})
	rec(time.Second, checklists.Event{Type: checklists.EventSwapFinished, Result: checklists.ResultOK})
	for _, item := range rb.PostRecovery {
		rec(time.Second, checklists.Event{Type: checklists.EventChecklistTicked, Title: item, Who: "trainee"})
	}
	if err := j.CloseIncident("drill complete", ""); err != nil {
		t.Fatal(err)
	}
	return j.Incident(), rb, sc
}

// The RPO line measures the data lost from the recovery point to the fault (the sandbox
// knows when it began), not to when the trainee started the drill, and never says met
// where a mistake names data lost that a better choice keeps: a point in time earlier than
// needed, or a backup older than the clean one, even within the target's figure.
func TestScoreRPOAgreesWithTheDataLost(t *testing.T) {
	fault := time.Date(2024, 1, 25, 13, 45, 0, 300_000_000, time.UTC)
	start := fault.Add(2 * time.Minute) // the trainee opened the drill after the fault
	right := map[string]string{}
	for _, tb := range Tables {
		right["public."+tb] = "10 right"
	}
	lost := map[string]string{}
	for k, v := range right {
		lost[k] = v
	}
	lost["public.Event"] = "9 fewer"
	sb := &Sandbox{FaultAt: fault, BeforeFault: right, Prints: right, Clean: "spywatcher_incremental_20240125_133000.dump.gz.gpg",
		Backups: []string{"spywatcher_full_20240125_130000.dump.gz.gpg", "spywatcher_incremental_20240125_133000.dump.gz.gpg"}}

	for _, c := range []struct {
		name   string
		backup string
		point  time.Time
		prints map[string]string
		rpo    time.Duration
		met    bool
		want   []string
	}{
		{"a point in time 40s before the fault, losing writes", "spywatcher_full_20240125_134420.dump", fault.Add(-40 * time.Second), lost, 40 * time.Second, false,
			[]string{"RPO       40.0s of data lost (the recovery point to the fault), target 1h: NOT MET: an avoidable loss", "mistake   recovered to a point earlier than needed"}},
		{"the point just before the fault", "spywatcher_full_20240125_134500.dump", fault.Add(-200 * time.Millisecond), right, 200 * time.Millisecond, true,
			[]string{"RPO       0.2s of data lost (the recovery point to the fault), target 1h: met", "score     PASS"}},
		{"a dump older than the clean one, within the hour", "spywatcher_full_20240125_130000.dump.gz.gpg", time.Time{}, right, 45*time.Minute + 300*time.Millisecond, false,
			[]string{"RPO       45:00 of data lost (the backup's time to the fault), target 1h: NOT MET: an avoidable loss", "older than the clean one"}},
		{"the clean dump", sb.Clean, time.Time{}, right, 15*time.Minute + 300*time.Millisecond, true,
			[]string{"RPO       15:00 of data lost (the backup's time to the fault), target 1h: met", "score     PASS"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			inc, rb, sc := recovered(t, start, c.backup, c.point)
			card := Score(ScoreInput{Mode: ModeConsole, Incident: inc, Runbook: rb, Scenario: sc, Sandbox: sb, Prints: c.prints, Now: start.Add(time.Hour)})
			text := card.Text()
			if card.RPOSeconds == nil || secs(*card.RPOSeconds) != c.rpo || card.RPOMet != c.met {
				t.Errorf("RPO %v, met %v; want %s, met %v\n%s", card.RPOSeconds, card.RPOMet, c.rpo, c.met, text)
			}
			for _, w := range c.want {
				if !strings.Contains(text, w) {
					t.Errorf("the scorecard lacks %q:\n%s", w, text)
				}
			}
			// The two agree: a data-loss mistake named, and the RPO met, never together.
			if strings.Contains(text, "data lost") && strings.Contains(text, "mistake") && strings.Contains(text, "target 1h: met") {
				t.Errorf("the RPO is met beside a data-loss mistake:\n%s", text)
			}
		})
	}
}

// A drill that never recovered has no time to recovery for the trend; a tabletop has one
// when it was closed as complete.
func TestTimeToRecoveryOnlyOfDrillsThatRecovered(t *testing.T) {
	for _, c := range []struct {
		card Scorecard
		ok   bool
	}{
		{Scorecard{Mode: ModeConsole, Recovered: true, RTOSeconds: 600}, true},
		{Scorecard{Mode: ModeConsole, RTOSeconds: 600}, false},                            // left open, nothing swapped in
		{Scorecard{Mode: ModeConsole, Outcome: "drill complete", RTOSeconds: 600}, false}, // closed before any swap
		{Scorecard{Mode: ModeTabletop, Outcome: "drill complete", RTOSeconds: 600}, true},
		{Scorecard{Mode: ModeTabletop, Outcome: "drill abandoned", RTOSeconds: 600}, false},
		{Scorecard{Mode: ModeTabletop, RTOSeconds: 600}, false}, // left open
	} {
		if took, ok := c.card.TimeToRecovery(); ok != c.ok || ok && took != 10*time.Minute {
			t.Errorf("%s, outcome %q, recovered %v: %s, %v; want %v", c.card.Mode, c.card.Outcome, c.card.Recovered, took, ok, c.ok)
		}
	}
}
