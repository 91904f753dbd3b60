package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"drconsole/checklists"
	"drconsole/drill"
)

func TestIncidentsAndReport(t *testing.T) {
	state := t.TempDir()
	env := map[string]string{"XDG_STATE_HOME": state, "USER": "carol"}
	stateDir := checklists.StateDir("", func(k string) string { return env[k] })
	if stateDir != filepath.Join(state, "drconsole") {
		t.Fatalf("StateDir = %s", stateDir)
	}
	start := time.Date(2024, 1, 25, 14, 0, 0, 0, time.UTC)
	now := start
	clock := func() time.Time { return now }
	s, _ := checklists.Default().Scenario(checklists.DefaultScenario)

	old, err := checklists.StartIncident(checklists.StartOptions{StateDir: stateDir, Scenario: s, Operator: "carol", Host: "bastion", Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	old.CloseIncident("recovered", "")
	old.Close()
	now = now.Add(24 * time.Hour)
	j, err := checklists.StartIncident(checklists.StartOptions{StateDir: stateDir, Scenario: s, Drill: true, Operator: checklists.Operator(func(k string) string { return env[k] }), Host: "bastion", Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	j.Record(checklists.Event{Type: checklists.EventStepStarted, Step: 1})
	now = now.Add(12 * time.Minute)
	j.Record(checklists.Event{Type: checklists.EventStepDone, Step: 1})
	j.Close()

	out, errOut, code := runCLI(t, env, "incidents")
	if code != 0 {
		t.Fatalf("incidents: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "20240126-140000-database-corruption-drill") || !strings.Contains(lines[1], "open") || !strings.Contains(lines[2], "closed") {
		t.Fatalf("incidents:\n%s", out)
	}
	out, _, _ = runCLI(t, env, "incidents", "--json")
	var list []checklists.IncidentSummary
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 || list[0].StepsDone != 1 {
		t.Fatalf("incidents --json: %v %+v", err, list)
	}

	reportNow = func() time.Time { return now.Add(3 * time.Minute) }
	defer func() { reportNow = time.Now }()
	out, errOut, code = runCLI(t, env, "report")
	if code != 0 || !strings.Contains(out, "# Drill report: Database Corruption") || !strings.Contains(out, "still open at 2024-01-26 14:15:00 UTC") {
		t.Fatalf("report: exit %d %s\n%s", code, errOut, out)
	}
	file := filepath.Join(t.TempDir(), "r.json")
	if _, errOut, code = runCLI(t, env, "report", "20240125", "--json", "-o", file); code != 0 {
		t.Fatalf("report --json -o: exit %d %s", code, errOut)
	}
	data, _ := os.ReadFile(file)
	var r checklists.Report
	if err := json.Unmarshal(data, &r); err != nil || !r.Closed || r.Outcome != "recovered" || r.Drill {
		t.Fatalf("report json: %v %+v", err, r)
	}
	if _, _, code = runCLI(t, env, "report", "nope"); code != 1 {
		t.Errorf("report of a missing incident: exit %d", code)
	}
	if out, _, code = runCLI(t, map[string]string{"XDG_STATE_HOME": t.TempDir()}, "incidents"); code != 0 || !strings.HasPrefix(out, "No incidents") {
		t.Errorf("empty: %d %q", code, out)
	}
}

// report --drills gives no time to recovery to a drill that never recovered (left open,
// or closed before a swap): it says so, and the scenario's first, last and median times
// are of the drills that did.
func TestDrillsReportCountsOpenDrillsAsNotRecovered(t *testing.T) {
	state := t.TempDir()
	env := map[string]string{"XDG_STATE_HOME": state}
	records := drill.RecordDir(checklists.StateDir("", func(k string) string { return env[k] }))
	start := time.Date(2024, 1, 25, 14, 0, 0, 0, time.UTC)
	for i, c := range []drill.Scorecard{
		{Mode: drill.ModeConsole, Recovered: true, RTOSeconds: 25 * 60, Outcome: "drill complete", Pass: true},
		{Mode: drill.ModeConsole, RTOSeconds: 7 * 60, Mistakes: []string{"the drill was left open: it was never closed with an outcome"}}, // left open
		{Mode: drill.ModeConsole, Recovered: true, RTOSeconds: 35 * 60, Outcome: "drill complete", Pass: true},
		{Mode: drill.ModeTabletop, RTOSeconds: 3 * 60}, // a tabletop left open
	} {
		c.Scenario, c.ScenarioName, c.RTOTarget, c.Mistakes = "database-corruption", "Database Corruption", 7200, append([]string{}, c.Mistakes...)
		c.Started = start.Add(time.Duration(i) * 24 * time.Hour)
		if _, err := c.Save(records, ""); err != nil {
			t.Fatal(err)
		}
	}
	out, errb, code := runCLI(t, env, "report", "--drills")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	for _, want := range []string{
		"| Database Corruption | 4 | 2 | 25m | 35m | 30m | 2h |", // first, last, median of the two recovered
		"| 2024-01-26 14:00 | Database Corruption | console |  | not recovered |",
		"| 2024-01-28 14:00 | Database Corruption | tabletop |  | not recovered |",
		"2 did not (left open, or closed before a restore was swapped in)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report --drills lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "7m") || strings.Contains(out, "3m") {
		t.Errorf("a drill that never recovered is given a time:\n%s", out)
	}
	out, _, _ = runCLI(t, env, "report", "--drills", "--json")
	var r struct {
		Scenarios []struct {
			Recovered int      `json:"recovered"`
			First     *float64 `json:"first_rto_seconds"`
			Median    *float64 `json:"median_rto_seconds"`
		} `json:"scenarios"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Scenarios) != 1 || r.Scenarios[0].Recovered != 2 || r.Scenarios[0].First == nil || *r.Scenarios[0].First != 1500 || *r.Scenarios[0].Median != 1800 {
		t.Errorf("report --drills --json: %v\n%s", err, out)
	}
}
