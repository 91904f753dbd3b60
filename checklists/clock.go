package checklists

import "time"

// Clock is where an incident stands in time at one moment: the figures the console
// shows and the report keeps. All of it is computed from the journal; nothing ticks.
type Clock struct {
	At      time.Time
	Elapsed time.Duration // since the incident started; up to its end once closed

	RTO          time.Duration
	RTORemaining time.Duration // negative once over
	OverRTO      bool          // Elapsed > RTO: meeting the RTO exactly is meeting it

	Steps   []StepClock
	Current int // the number of the step running or paused now; 0 when none

	// Escalation is the level due now (Level is 1-based; 0 when the path is empty).
	// Next is the level after it, due in NextIn; nil at the last level.
	Level      int
	Escalation Escalation
	Next       *Escalation
	NextIn     time.Duration
}

// StepClock is one step's time against its budget.
type StepClock struct {
	Number    int
	Title     string
	Status    StepStatus
	Budget    time.Duration // 0: untimed
	Elapsed   time.Duration // running time, pauses excluded
	Remaining time.Duration // Budget - Elapsed; 0 for untimed steps
	Over      bool          // Elapsed > Budget for a timed step
}

// ClockAt computes the clock of an incident at now, with the runbook's escalation path.
// For a closed incident, now is taken as its end.
func ClockAt(inc *Incident, path []Escalation, now time.Time) Clock {
	if inc.Closed && !inc.Ended.IsZero() {
		now = inc.Ended
	}
	c := Clock{At: now, Elapsed: nonNegative(now.Sub(inc.Started)), RTO: inc.Plan.RTO()}
	c.RTORemaining = c.RTO - c.Elapsed
	c.OverRTO = c.RTO > 0 && c.Elapsed > c.RTO
	for _, s := range inc.Steps {
		sc := StepClock{Number: s.Number, Title: s.Title, Status: s.Status, Budget: s.Budget, Elapsed: StepElapsed(s, now)}
		if sc.Budget > 0 {
			sc.Remaining = sc.Budget - sc.Elapsed
			sc.Over = sc.Elapsed > sc.Budget
		}
		if s.Status == StepRunning || s.Status == StepPaused {
			c.Current = s.Number
		}
		c.Steps = append(c.Steps, sc)
	}
	c.Level, c.Escalation, c.Next, c.NextIn = EscalationAt(path, c.Elapsed)
	return c
}

// StepElapsed is how long a step has been worked on at now: from its start to its end
// (or now), less the time it spent paused.
func StepElapsed(s StepRecord, now time.Time) time.Duration {
	if s.Started.IsZero() {
		return 0
	}
	end := now
	if !s.Ended.IsZero() {
		end = s.Ended
	}
	d := end.Sub(s.Started) - s.Paused
	if s.Status == StepPaused && !s.PausedAt.IsZero() && s.PausedAt.Before(end) {
		d -= end.Sub(s.PausedAt)
	}
	return nonNegative(d)
}

// EscalationAt returns the escalation level due after elapsed: the last level whose
// From has been reached (so at exactly 30 minutes the team lead is due, not on-call),
// and the next level with the time until it is due.
func EscalationAt(path []Escalation, elapsed time.Duration) (level int, due Escalation, next *Escalation, nextIn time.Duration) {
	for i, e := range path {
		if elapsed >= e.From {
			level, due = i+1, e
		}
	}
	if level == 0 && len(path) > 0 { // a path that does not start at 0: the first level until then
		level, due = 1, path[0]
	}
	if level > 0 && level < len(path) {
		n := path[level]
		next, nextIn = &n, nonNegative(n.From-elapsed)
	}
	return level, due, next, nextIn
}

func nonNegative(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}
