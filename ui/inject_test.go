package ui

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"drconsole/checklists"
	"drconsole/drill/inject"
)

func injectHarness(t *testing.T, injects []inject.Inject, apply func(context.Context, string) (string, error)) *harness {
	h := &harness{t: t, now: t0}
	h.m = New(Options{StateDir: t.TempDir(), Theme: PlainTheme(), Operator: "alice", Host: "bastion", Drill: true,
		Now: func() time.Time { return h.now }, Injects: injects, ApplyInject: apply})
	return h
}

func (h *harness) after(d time.Duration) {
	h.now = h.now.Add(d)
	h.send(tickMsg(h.now))
}

// An inject due at a time is shown over the screen when the clock reaches it, stays
// there until acknowledged, and is journaled with its acknowledgement.
func TestInjectDueAtATimeIsShownAndJournaled(t *testing.T) {
	h := injectHarness(t, []inject.Inject{
		{At: 10 * time.Minute, Event: "The primary bucket is unreachable", Detail: "Requests to the primary region time out. Restore from the secondary location.", Apply: inject.PrimaryUnreachable},
		{At: time.Hour, Event: "later"},
	}, nil)
	h.size(80, 24)
	h.startIncident()
	h.after(9 * time.Minute)
	if strings.Contains(h.screen(), "INJECT") || len(h.m.s.journal.Incident().Injects) != 0 {
		t.Fatalf("shown before it was due:\n%s", h.screen())
	}
	h.after(time.Minute)
	h.both("inject")
	inc := h.m.s.journal.Incident()
	if len(inc.Injects) != 1 {
		t.Fatalf("injects journaled: %+v", inc.Injects)
	}
	in := inc.Injects[0]
	if in.Ref != "inject-1" || in.Event != "The primary bucket is unreachable" || in.Apply != inject.PrimaryUnreachable ||
		in.Result != checklists.ResultShown || !in.Time.Equal(t0.Add(10*time.Minute)) || !in.Acked.IsZero() {
		t.Fatalf("journaled: %+v", in)
	}
	// It stays on every screen, and has the keys, until acknowledged.
	h.after(time.Minute)
	h.key("down", "j", "q")
	if h.quit || !strings.Contains(h.screen(), "The primary bucket is unreachable") {
		t.Fatalf("the inject went away without its acknowledgement:\n%s", h.screen())
	}
	h.key("enter")
	if strings.Contains(h.screen(), "INJECT") {
		t.Fatalf("still shown after enter:\n%s", h.screen())
	}
	if in := h.m.s.journal.Incident().Injects[0]; in.AckedBy != "alice" || !in.Acked.Equal(t0.Add(11*time.Minute)) {
		t.Fatalf("acknowledgement: %+v", in)
	}
	h.key("enter") // the screen has its keys again: opens step 1
	if _, ok := h.top().(*stepScreen); !ok {
		t.Fatalf("not on the step:\n%s", h.screen())
	}
	h.after(time.Minute) // nothing fires twice
	if n := len(h.m.s.journal.Incident().Injects); n != 1 {
		t.Fatalf("%d injects journaled", n)
	}
}

// A sandbox drill applies the inject before the team sees the outcome; an escalation
// inject is answered from the banner, and the answer is an escalation_ack.
func TestInjectAppliedOnStepAndEscalation(t *testing.T) {
	var applied []string
	h := injectHarness(t, []inject.Inject{
		{Step: 1, Event: "The newest backup fails verification", Apply: inject.NewestBackupCorrupt},
		{At: 5 * time.Minute, Event: "The DBA is unreachable: escalate", Apply: inject.Escalate},
	}, func(_ context.Context, what string) (string, error) {
		applied = append(applied, what)
		return "the newest backup was damaged in primary and secondary", nil
	})
	h.size(80, 24)
	h.startIncident()
	h.after(time.Second)
	if strings.Contains(h.screen(), "INJECT") {
		t.Fatal("an on_step inject shown before its step started")
	}
	h.key("enter") // step 1 starts
	h.after(time.Second)
	screen := ansi.Strip(h.screen())
	if !strings.Contains(screen, "INJECT 1 · when step 1 starts") || !strings.Contains(screen, "In the sandbox: the newest backup was damaged") {
		t.Fatalf("no applied inject:\n%s", screen)
	}
	if len(applied) != 1 || applied[0] != inject.NewestBackupCorrupt {
		t.Fatalf("applied: %v", applied)
	}
	h.key("enter")
	h.after(5 * time.Minute)
	if !strings.Contains(ansi.Strip(h.screen()), "Escalation level 2 (Team Lead) is due") {
		t.Fatalf("no escalation:\n%s", ansi.Strip(h.screen()))
	}
	h.key("p")
	inc := h.m.s.journal.Incident()
	if len(inc.Injects) != 2 || inc.Injects[0].Result != checklists.ResultApplied || inc.Injects[0].Step != 1 ||
		inc.Injects[1].Apply != inject.Escalate || inc.Injects[1].Level != 2 || inc.Injects[1].Acked.IsZero() {
		t.Fatalf("injects: %+v", inc.Injects)
	}
	if !inc.Acknowledged(2) || inc.Escalations[0].Result != "paged" || inc.Escalations[0].Time.Before(inc.Injects[1].Time) {
		t.Fatalf("escalations: %+v", inc.Escalations)
	}
	if len(applied) != 1 {
		t.Errorf("applied again: %v", applied)
	}
}

// A drill resumed after the console ended shows again the injects the team had not
// acknowledged, without journaling or applying them again.
func TestResumedDrillShowsUnacknowledgedInjects(t *testing.T) {
	injects := []inject.Inject{{At: time.Minute, Event: "The primary bucket is unreachable", Apply: inject.PrimaryUnreachable}}
	applied := 0
	apply := func(context.Context, string) (string, error) { applied++; return "moved away", nil }
	h := injectHarness(t, injects, apply)
	h.startIncident()
	h.after(time.Minute)
	h.m.s.journal.Close()
	h2 := &harness{t: t, now: h.now.Add(time.Minute)}
	h2.m = New(Options{StateDir: h.m.s.opt.StateDir, Theme: PlainTheme(), Operator: "bob", Drill: true,
		Now: func() time.Time { return h2.now }, Injects: injects, ApplyInject: apply})
	h2.send(h2.top().init()())
	h2.key("enter") // resume the drill
	h2.after(time.Second)
	if !strings.Contains(h2.screen(), "INJECT 1 · at 1m") || !strings.Contains(h2.screen(), "In the sandbox: moved away") {
		t.Fatalf("the unacknowledged inject is not shown again:\n%s", h2.screen())
	}
	h2.key("enter")
	inc := h2.m.s.journal.Incident()
	if applied != 1 || len(inc.Injects) != 1 || inc.Injects[0].AckedBy != "bob" {
		t.Fatalf("applied %d times; injects %+v", applied, inc.Injects)
	}
}
