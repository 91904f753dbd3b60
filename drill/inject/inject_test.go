package inject

import (
	"strings"
	"testing"
	"time"

	"drconsole/checklists"
)

var steps = []string{"Assess the Damage", "Stop the Application", "Identify Last Known Good Backup"}

func TestParse(t *testing.T) {
	got, err := Parse("f.yaml", []byte(`
- at: 10m
  event: the primary bucket is unreachable
  apply: primary-unreachable
- on_step: identify last known good backup
  event: the newest backup fails verification
  detail: take another
- on_step: 2
  event: "the DBA is unreachable: escalate"
  apply: escalate
`), steps)
	if err != nil {
		t.Fatal(err)
	}
	want := []Inject{
		{At: 10 * time.Minute, Event: "the primary bucket is unreachable", Apply: PrimaryUnreachable, Line: 2},
		{Step: 3, Event: "the newest backup fails verification", Detail: "take another", Line: 5},
		{Step: 2, Event: "the DBA is unreachable: escalate", Apply: Escalate, Line: 8},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("inject %d: got %+v, want %+v", i+1, got[i], want[i])
		}
	}
	started := func(n int) bool { return n == 3 }
	if got[0].Due(9*time.Minute, started) || !got[0].Due(10*time.Minute, started) || !got[1].Due(0, started) || got[2].Due(time.Hour, started) {
		t.Error("Due is wrong")
	}
}

func TestParseErrorsGiveFileAndLine(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"bad duration", "- at: 10\n  event: x\n- at: ten minutes\n  event: y\n",
			"f.yaml:1: inject 1: at \"10\" has no unit: write it like 10m or 1h30m\nf.yaml:3: inject 2: at \"ten minutes\" is not a duration"},
		{"unknown apply", "- at: 1m\n  event: x\n  apply: delete-everything\n",
			"f.yaml:3: inject 1: apply \"delete-everything\" is unknown: use primary-unreachable, newest-backup-corrupt, escalate"},
		{"unknown step", "- at: 1m\n  event: x\n- on_step: Reboot the Datacenter\n  event: y\n",
			"f.yaml:3: inject 2: on_step \"Reboot the Datacenter\" is not a step of the scenario: its steps are 1 \"Assess the Damage\""},
		{"step out of range", "- on_step: 9\n  event: y\n", "f.yaml:1: inject 1: on_step \"9\" is not a step of the scenario: it has steps 1 to 3"},
		{"unknown field", "- at: 1m\n  event: x\n  when: now\n", "f.yaml:3: inject 1: unknown field \"when\""},
		{"both", "- at: 1m\n  on_step: 1\n  event: x\n", "f.yaml:2: inject 1 has both at and on_step"},
		{"neither", "\n- event: x\n", "f.yaml:2: inject 1 is missing when it is due"},
		{"no event", "- at: 1m\n", "f.yaml:1: inject 1 is missing its event"},
		{"not a list", "at: 1m\n", "f.yaml:1: an inject file is a list of injects"},
		{"syntax", "- at: 1m\n  event: [x\n", "f.yaml:"},
		{"empty", "", "f.yaml:1: the file is empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(c.yaml), steps)
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Errorf("got %v\nwant it to start %q", err, c.want)
			}
		})
	}
}

// Every scenario of the shipped runbook has an example, and it parses against its steps.
func TestExamplesParseAgainstTheShippedRunbook(t *testing.T) {
	rb := checklists.Default()
	if len(rb.Scenarios) != 4 {
		t.Fatalf("the runbook has %d scenarios; the examples cover 4", len(rb.Scenarios))
	}
	for _, sc := range rb.Scenarios {
		var titles []string
		for _, st := range sc.Steps {
			titles = append(titles, st.Title)
		}
		injects, err := Load("example", sc.ID, titles)
		if err != nil {
			t.Errorf("%s: %v", sc.ID, err)
			continue
		}
		applied := map[string]bool{}
		for _, in := range injects {
			applied[in.Apply] = true
		}
		if !applied[Escalate] || len(injects) < 3 {
			t.Errorf("%s: %d injects, applies %v: want three or more with an escalation", sc.ID, len(injects), applied)
		}
	}
	if _, err := Load("example", "no-such-scenario", nil); err == nil {
		t.Error("an example for an unknown scenario")
	}
}
