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
