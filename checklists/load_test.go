package checklists

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const badRunbook = `title: Broken
scenarios:
  - id: db
    name: Database
    rto: 2h
    rpo: 1h
    colour: red
    steps:
      - title: First
        budget: 10
        kind: manual
      - budget: 5m
        kind: teleport
      - title: Third
        budget: ten minutes
  - id: db
    name: Again
    rto: 1h
    rpo: 1h
    steps:
      - title: Long
        budget: 2h
`

func TestParseReportsEveryProblemWithPosition(t *testing.T) {
	_, problems := Parse("bad.yaml", []byte(badRunbook))
	var got []string
	for _, p := range problems {
		got = append(got, p.String())
	}
	want := []string{
		`bad.yaml:7:5: unknown field "colour" in scenario`,
		`bad.yaml:10:17: budget 10 is not a duration: give the unit, like 10m or 1h30m`,
		`bad.yaml:13:15: step kind "teleport" is unknown: use one of manual, command, restore, checks, health, notify`,
		`bad.yaml:12:9: step is missing its title`,
		`bad.yaml:15:17: budget "ten minutes" is not a duration: write it like 10m or 1h30m`,
		`bad.yaml:16:9: duplicate scenario id "db" (first used on line 3)`,
		`bad.yaml:18:10: warning: scenario "db": the steps' budgets add up to 2h (120 min), more than the 1h RTO (60 min)`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d:\n got %s\nwant %s…", i, got[i], want[i])
		}
	}
	if !HasErrors(problems) {
		t.Error("HasErrors = false")
	}
}

func TestParseSyntaxErrorHasLine(t *testing.T) {
	_, problems := Parse("x.yaml", []byte("title: a\nscenarios:\n  - id: [\n"))
	if len(problems) != 1 || problems[0].Line < 3 || !strings.Contains(problems[0].Message, "not valid YAML") {
		t.Fatalf("got %v", problems)
	}
}

func TestParseEmptyAndWrongShapes(t *testing.T) {
	for _, in := range []string{"", "- a\n- b\n", "scenarios: 3\n", "scenarios: []\n", "scenarios:\n  - id: a\n    name: A\n    rto: 1h\n    rpo: 1h\n    steps: {}\n"} {
		_, problems := Parse("x.yaml", []byte(in))
		if !HasErrors(problems) {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, DefaultYAML(), 0o600); err != nil {
		t.Fatal(err)
	}
	r, problems, err := Load(good)
	if err != nil || r == nil || HasErrors(problems) {
		t.Fatalf("Load(exported default) = %v, %v", problems, err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(badRunbook), 0o600)
	r, problems, err = Load(bad)
	if r != nil || !errors.Is(err, ErrInvalidRunbook) || len(problems) != 7 {
		t.Fatalf("Load(bad) = %v, %d problems, %v", r, len(problems), err)
	}
	if _, _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || errors.Is(err, ErrInvalidRunbook) {
		t.Fatalf("Load(missing) err = %v", err)
	}
}

func TestDefaultIsAFreshCopy(t *testing.T) {
	a := Default()
	a.Scenarios[0].Name = "changed"
	if Default().Scenarios[0].Name == "changed" {
		t.Fatal("Default shares state between calls")
	}
}
