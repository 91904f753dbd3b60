package checklists

import (
	"strings"
	"testing"
	"time"
)

// A drill's injects are folded into the incident, read back from the file, and listed
// under the report's timeline with what was applied and when they were acknowledged.
func TestInjectsAreJournaledAndReported(t *testing.T) {
	clk := &fakeClock{now: t0}
	dir := t.TempDir()
	j := startTest(t, dir, clk, true)
	clk.Advance(10 * time.Minute)
	mustRecord(t, j,
		Event{Type: EventInject, Ref: "inject-1", Title: "The primary bucket is unreachable", Note: "use the secondary", Kind: "primary-unreachable",
			Result: ResultApplied, Detail: "the primary location's directory was moved away"},
		Event{Type: EventInject, Ref: "inject-2", Step: 3, Title: "The DBA is unreachable: escalate", Kind: "escalate", Level: 2, Result: ResultShown},
	)
	clk.Advance(time.Minute)
	mustRecord(t, j, Event{Type: EventInjectAck, Ref: "inject-1", Who: "alice"})
	inc := j.Incident()
	if len(inc.Injects) != 2 || inc.Injects[0].Acked.IsZero() || inc.Injects[0].AckedBy != "alice" || !inc.Injects[1].Acked.IsZero() ||
		inc.Injects[1].Level != 2 || inc.Injects[1].Step != 3 || inc.Injects[0].Applied == "" {
		t.Fatalf("%+v", inc.Injects)
	}
	back, _, err := ReadJournal(j.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Injects) != 2 || back.Injects[0] != inc.Injects[0] {
		t.Fatalf("read back: %+v", back.Injects)
	}
	md := BuildReport(inc, nil, clk.now).Markdown()
	for _, want := range []string{
		"Injects:\n\n- 14:10:00 **The primary bucket is unreachable**: use the secondary; applied: the primary location's directory was moved away; acknowledged 14:11:00 by alice\n",
		"- 14:10:00 (step 3) **The DBA is unreachable: escalate**; escalation level 2 due; **not acknowledged**\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if i, k := strings.Index(md, "## Timeline"), strings.Index(md, "Injects:"); i < 0 || k < i {
		t.Error("the injects are not under the timeline")
	}
}
