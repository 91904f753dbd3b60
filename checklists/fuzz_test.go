package checklists

import (
	"bytes"
	"os"
	"testing"
	"time"
)

// FuzzParse: whatever the file, the loader returns problems with positions and never
// panics; a runbook it accepts must hold its own invariants.
func FuzzParse(f *testing.F) {
	f.Add(defaultYAML)
	f.Add([]byte(badRunbook))
	f.Add([]byte("scenarios:\n  - id: a\n    name: A\n    rto: 1h\n    rpo: 1h\n    steps:\n      - title: x\n        budget: 1h30m\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, problems := Parse("fuzz.yaml", data)
		for _, p := range problems {
			if p.Line < 1 || p.Col < 1 || p.Message == "" {
				t.Fatalf("problem without a place or message: %+v", p)
			}
		}
		if HasErrors(problems) {
			return
		}
		seen := map[string]bool{}
		for _, s := range r.Scenarios {
			if seen[s.ID] {
				t.Fatalf("duplicate id %q accepted", s.ID)
			}
			seen[s.ID] = true
			for _, st := range s.Steps {
				if !st.Kind.valid() || st.Title == "" || st.Budget < 0 {
					t.Fatalf("bad step accepted: %+v", st)
				}
			}
		}
	})
}

// FuzzReadJournal: any bytes after a valid start read back without a panic; damage is
// a warning, and the incident's start survives it.
func FuzzReadJournal(f *testing.F) {
	dir := f.TempDir()
	s, _ := Default().Scenario(DefaultScenario)
	j, err := StartIncident(StartOptions{StateDir: dir, Scenario: s, Operator: "o", Host: "h", Now: func() time.Time { return t0 }})
	if err != nil {
		f.Fatal(err)
	}
	exit := 2
	j.Record(Event{Type: EventStepStarted, Step: 1})
	j.Record(Event{Type: EventCommandRun, Step: 1, Command: "ls", ExitCode: &exit})
	j.Record(Event{Type: EventRestoreFinished, Result: ResultOK, Bytes: 10})
	j.Close()
	journal, _ := os.ReadFile(j.Path())
	lines := bytes.SplitAfter(journal, []byte("\n"))
	head := lines[0]
	f.Add([]byte(nil))
	f.Add(bytes.Join(lines[1:], nil))
	f.Add(bytes.Join(lines[1:], nil)[:40])
	f.Add([]byte(`{"seq":2,"type":"step_done","step":99}` + "\n" + `{"type":"incident_started"}` + "\n" + `{"seq":3,"type":"step_paused","step":1}`))
	escalation := Default().Escalation
	f.Fuzz(func(t *testing.T, tail []byte) {
		inc, _, err := readJournal(bytes.NewReader(append(append([]byte(nil), head...), tail...)), "x.jsonl")
		if err != nil {
			t.Fatalf("journal with a valid start failed: %v", err)
		}
		if inc.Scenario != DefaultScenario || len(inc.Steps) != len(s.Steps) {
			t.Fatalf("start lost: %+v", inc)
		}
		_ = ClockAt(inc, escalation, t0.Add(time.Hour))
		_ = BuildReport(inc, nil, t0.Add(time.Hour)).Markdown()
	})
}
