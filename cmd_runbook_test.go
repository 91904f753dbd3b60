package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The -update flag may be defined by another test file of package main; define it only
// if nobody has.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files under testdata/")
	}
}

func updating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// runCLI runs one command line in-process with an injected environment.
func runCLI(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }}
	code = a.main(args)
	return out.String(), errb.String(), code
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if updating() {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from the output (go test -run %s -update rewrites it):\n--- got\n%s", path, t.Name(), got)
	}
}

func TestRunbookShowGolden(t *testing.T) {
	out, errOut, code := runCLI(t, nil, "runbook", "show")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	golden(t, "runbook_show.golden", out)

	out, errOut, code = runCLI(t, nil, "runbook", "show", "database-corruption")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	golden(t, "runbook_show_database-corruption.golden", out)
}

func TestRunbookShowJSON(t *testing.T) {
	out, errOut, code := runCLI(t, nil, "runbook", "show", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var doc struct {
		Scenarios []struct {
			ID          string  `json:"id"`
			Name        string  `json:"name"`
			RTOMinutes  float64 `json:"rto_minutes"`
			RPOMinutes  float64 `json:"rpo_minutes"`
			Contact     string  `json:"contact"`
			PlanWarning string  `json:"plan_warning"`
			Steps       []struct {
				Title         string  `json:"title"`
				Kind          string  `json:"kind"`
				BudgetMinutes float64 `json:"budget_minutes"`
			} `json:"steps"`
		} `json:"scenarios"`
		PostRecovery []string `json:"post_recovery_checklist"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Scenarios) != 4 || len(doc.PostRecovery) != 11 {
		t.Fatalf("%d scenarios, %d checklist items", len(doc.Scenarios), len(doc.PostRecovery))
	}
	s := doc.Scenarios[0]
	if s.ID != "database-corruption" || s.RTOMinutes != 120 || s.RPOMinutes != 60 || s.Contact != "Database Admin" || s.PlanWarning == "" {
		t.Errorf("first scenario: %+v", s)
	}
	var sum float64
	for _, st := range s.Steps {
		sum += st.BudgetMinutes
	}
	if sum != 140 || s.Steps[3].Kind != "restore" || s.Steps[0].Title != "Assess the Damage" {
		t.Errorf("steps: sum %v, %+v", sum, s.Steps)
	}
}

func TestRunbookValidate(t *testing.T) {
	dir := t.TempDir()
	exported := filepath.Join(dir, "runbook.yaml")
	if _, errOut, code := runCLI(t, nil, "runbook", "export", "-o", exported); code != 0 {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	if _, _, code := runCLI(t, nil, "runbook", "export", "-o", exported); code == 0 {
		t.Error("export over an existing file without --force succeeded")
	}
	out, errOut, code := runCLI(t, nil, "runbook", "validate", exported)
	if code != 0 || !strings.Contains(out, "valid (2 warnings)") || strings.Count(errOut, "warning:") != 2 {
		t.Fatalf("validate exported: exit %d\n%s\n%s", code, out, errOut)
	}

	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("scenarios:\n  - id: a\n    name: A\n    rto: 2\n    rpo: 1h\n    steps:\n      - kind: nope\n  - id: a\n    name: B\n    rto: 1h\n    rpo: 1h\n    steps: [{title: x}]\n"), 0o644)
	_, errOut, code = runCLI(t, nil, "runbook", "validate", bad)
	if code != 1 {
		t.Errorf("validate bad: exit %d, want 1", code)
	}
	for _, want := range []string{bad + ":4:10: rto 2 is not a duration", bad + ":7:15: step kind \"nope\"", bad + ":7:9: step is missing its title", bad + ":8:9: duplicate scenario id"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}

	// --runbook with errors makes show fail with the problems listed.
	_, errOut, code = runCLI(t, nil, "runbook", "show", "--runbook", bad)
	if code != 1 || !strings.Contains(errOut, bad+":4:10:") {
		t.Errorf("show --runbook bad: exit %d\n%s", code, errOut)
	}
}

func TestRunbookExportStdout(t *testing.T) {
	out, _, code := runCLI(t, nil, "runbook", "export")
	if code != 0 || !strings.Contains(out, "id: database-corruption") {
		t.Fatalf("exit %d", code)
	}
	if _, _, code := runCLI(t, nil, "runbook"); code != 2 {
		t.Errorf("runbook without action: exit %d, want 2", code)
	}
}

// The configuration file may name the team's runbook; --runbook still wins.
func TestRunbookFromConfigFile(t *testing.T) {
	dir := t.TempDir()
	out, _, code := runCLI(t, nil, "runbook", "export")
	if code != 0 {
		t.Fatal("export failed")
	}
	custom := strings.Replace(out, "name: Database Corruption", "name: Database Corruption (team copy)", 1)
	if err := os.WriteFile(filepath.Join(dir, "team-runbook.yaml"), []byte(custom), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "drconsole.yaml")
	if err := os.WriteFile(cfg, []byte("runbook: team-runbook.yaml\nlocations:\n  - name: local\n    path: "+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errb, code := runCLI(t, nil, "runbook", "show", "--config", cfg)
	if code != 0 || !strings.Contains(out, "Database Corruption (team copy)") {
		t.Errorf("runbook show with a config naming a runbook: exit %d, %s\n%s", code, errb, out)
	}
	out, _, _ = runCLI(t, nil, "runbook", "show", "--config", cfg, "--runbook", filepath.Join(dir, "missing.yaml"))
	if strings.Contains(out, "team copy") {
		t.Error("--runbook did not win over the configuration file")
	}
}
