package checklists

import (
	"testing"
	"time"
)

func TestEscalationAtEdges(t *testing.T) {
	path := Default().Escalation
	for _, c := range []struct {
		elapsed time.Duration
		role    string
		next    string
		nextIn  time.Duration
	}{
		{0, "On-Call Engineer", "Team Lead", 30 * time.Minute},
		{29*time.Minute + 59*time.Second, "On-Call Engineer", "Team Lead", time.Second},
		{30 * time.Minute, "Team Lead", "Engineering Manager", 30 * time.Minute},
		{59 * time.Minute, "Team Lead", "Engineering Manager", time.Minute},
		{time.Hour, "Engineering Manager", "CTO", time.Hour},
		{2*time.Hour - time.Nanosecond, "Engineering Manager", "CTO", time.Nanosecond},
		{2 * time.Hour, "CTO", "", 0},
		{30 * time.Hour, "CTO", "", 0},
	} {
		_, due, next, in := EscalationAt(path, c.elapsed)
		nextRole := ""
		if next != nil {
			nextRole = next.Role
		}
		if due.Role != c.role || nextRole != c.next || in != c.nextIn {
			t.Errorf("at %s: %s, next %q in %s; want %s, next %q in %s", c.elapsed, due.Role, nextRole, in, c.role, c.next, c.nextIn)
		}
	}
	if level, _, next, _ := EscalationAt(nil, time.Hour); level != 0 || next != nil {
		t.Errorf("empty path: level %d", level)
	}
}

func clockIncident(t *testing.T) (*Journal, *fakeClock) {
	clk := &fakeClock{now: t0}
	return startTest(t, t.TempDir(), clk, false), clk
}

func TestClockStepsAgainstBudget(t *testing.T) {
	j, clk := clockIncident(t)
	path := Default().Escalation

	// Step 1 (10m budget) takes exactly 10m: on budget, not over.
	mustRecord(t, j, Event{Type: EventStepStarted, Step: 1})
	clk.Advance(10 * time.Minute)
	mustRecord(t, j, Event{Type: EventStepDone, Step: 1})
	// Step 2 (5m) takes 5m1s: over.
	mustRecord(t, j, Event{Type: EventStepStarted, Step: 2})
	clk.Advance(5*time.Minute + time.Second)
	mustRecord(t, j, Event{Type: EventStepDone, Step: 2})
	// Step 3 (5m) runs 3m, is paused 20m, resumed, runs 1m, paused again and still paused.
	mustRecord(t, j, Event{Type: EventStepStarted, Step: 3})
	clk.Advance(3 * time.Minute)
	mustRecord(t, j, Event{Type: EventStepPaused, Step: 3, Note: "waiting for AWS credentials"})
	clk.Advance(20 * time.Minute)
	mustRecord(t, j, Event{Type: EventStepResumed, Step: 3})
	clk.Advance(time.Minute)
	mustRecord(t, j, Event{Type: EventStepPaused, Step: 3})
	clk.Advance(30 * time.Minute)

	c := ClockAt(j.Incident(), path, clk.Now())
	if c.Elapsed != 69*time.Minute+time.Second {
		t.Errorf("elapsed %s", c.Elapsed)
	}
	s1, s2, s3 := c.Steps[0], c.Steps[1], c.Steps[2]
	if s1.Elapsed != 10*time.Minute || s1.Over || s1.Remaining != 0 {
		t.Errorf("step 1: %+v", s1)
	}
	if s2.Elapsed != 5*time.Minute+time.Second || !s2.Over || s2.Remaining != -time.Second {
		t.Errorf("step 2: %+v", s2)
	}
	if s3.Elapsed != 4*time.Minute || s3.Over || s3.Status != StepPaused || c.Current != 3 {
		t.Errorf("step 3: %+v current %d", s3, c.Current)
	}
	if c.Escalation.Role != "Engineering Manager" || c.OverRTO || c.RTORemaining != 50*time.Minute+59*time.Second {
		t.Errorf("clock: %s over=%v remaining %s", c.Escalation.Role, c.OverRTO, c.RTORemaining)
	}
	if c.Steps[7].Budget != 10*time.Minute || c.Steps[7].Elapsed != 0 || c.Steps[7].Status != StepPending {
		t.Errorf("pending step: %+v", c.Steps[7])
	}

	// Exactly at the RTO the target is met; a second later it is not.
	start := j.Incident().Started
	if c := ClockAt(j.Incident(), path, start.Add(2*time.Hour)); c.OverRTO || c.Escalation.Role != "CTO" {
		t.Errorf("at 2h: over=%v %s", c.OverRTO, c.Escalation.Role)
	}
	if c := ClockAt(j.Incident(), path, start.Add(2*time.Hour+time.Second)); !c.OverRTO {
		t.Error("at 2h1s: not over RTO")
	}
	// A clock read before the start (skewed clocks) is zero, not negative.
	if c := ClockAt(j.Incident(), path, start.Add(-time.Minute)); c.Elapsed != 0 {
		t.Errorf("before start: %s", c.Elapsed)
	}
}

func TestClockOfClosedIncidentStops(t *testing.T) {
	j, clk := clockIncident(t)
	mustRecord(t, j, Event{Type: EventStepStarted, Step: 4})
	clk.Advance(45 * time.Minute)
	mustRecord(t, j, Event{Type: EventStepPaused, Step: 4})
	clk.Advance(15 * time.Minute)
	j.CloseIncident("abandoned", "")
	c := ClockAt(j.Incident(), nil, clk.Now().Add(10*time.Hour))
	if c.Elapsed != time.Hour || c.Steps[3].Elapsed != 45*time.Minute || c.Level != 0 {
		t.Errorf("closed: elapsed %s, step 4 %s", c.Elapsed, c.Steps[3].Elapsed)
	}
	// An untimed step is never over budget.
	inc := j.Incident()
	inc.Steps[3].Budget = 0
	if c := ClockAt(inc, nil, clk.Now()); c.Steps[3].Over || c.Steps[3].Remaining != 0 {
		t.Errorf("untimed: %+v", c.Steps[3])
	}
}
