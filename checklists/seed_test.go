package checklists

import (
	"bufio"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// seedRunbook is what the printed runbook says, read from its Markdown, so that the test
// compares the embedded YAML with the seed itself rather than with a second copy.
type seedRunbook struct {
	scenarios    []seedScenario
	postRecovery []string
	monthly      []string
	quarterly    []string
	annual       []string
	escalation   []string
}

type seedScenario struct {
	name          string
	rto, rpo      string // "2 hours", "1 hour"
	contact       string
	symptoms      []string
	titles        []string
	budgets       []time.Duration
	timings       []string
	totalRTONotes string
}

var (
	seedScenarioHead = regexp.MustCompile(`^### Scenario \d+: (.+)$`)
	seedStep         = regexp.MustCompile(`^(\d+)\. \*\*(.+?)\*\*(?: \((.+)\))?$`)
	seedMinutes      = regexp.MustCompile(`^(\d+) minutes$`)
	seedTableRow     = regexp.MustCompile(`^\| (.+?) +\| (.+?) +\| (.+?) +\| (.+?) +\|$`)
	seedTotal        = regexp.MustCompile(`^\*\*Total RTO: (.+)\*\*$`)
	seedEscalation   = regexp.MustCompile(`^\d+\. (.+) \((.+)\)$`)
)

func readSeed(t *testing.T) seedRunbook {
	t.Helper()
	f, err := os.Open("testdata/DISASTER_RECOVERY_RUNBOOK.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var sr seedRunbook
	table := map[string][3]string{}
	var cur *seedScenario
	section, sub := "", ""
	inCode := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trim := strings.TrimSpace(line)
		if strings.HasPrefix(trim, "```") {
			inCode = !inCode
			continue
		}
		if inCode {
			continue
		}
		switch {
		case strings.HasPrefix(line, "## "):
			section, sub, cur = line[3:], "", nil
			continue
		case strings.HasPrefix(line, "### "):
			sub = line[4:]
			cur = nil
			if m := seedScenarioHead.FindStringSubmatch(line); m != nil {
				sr.scenarios = append(sr.scenarios, seedScenario{name: m[1]})
				cur = &sr.scenarios[len(sr.scenarios)-1]
			}
			continue
		}
		if m := seedTableRow.FindStringSubmatch(line); m != nil && section == "Quick Reference" && m[1] != "Scenario" && !strings.HasPrefix(m[1], "-") {
			table[m[1]] = [3]string{m[2], m[3], m[4]}
		}
		if cur != nil {
			if m := seedStep.FindStringSubmatch(line); m != nil {
				cur.titles = append(cur.titles, m[2])
				var budget time.Duration
				timing := ""
				if mm := seedMinutes.FindStringSubmatch(m[3]); mm != nil {
					n, _ := strconv.Atoi(mm[1])
					budget = time.Duration(n) * time.Minute
				} else {
					timing = m[3]
				}
				cur.budgets = append(cur.budgets, budget)
				cur.timings = append(cur.timings, timing)
			}
			if m := seedTotal.FindStringSubmatch(line); m != nil {
				cur.totalRTONotes = m[1]
			}
			if strings.HasPrefix(line, "- ") && len(cur.titles) == 0 {
				cur.symptoms = append(cur.symptoms, line[2:])
			}
		}
		item, isItem := strings.CutPrefix(line, "- [ ] ")
		switch {
		case isItem && section == "Post-Recovery Checklist":
			sr.postRecovery = append(sr.postRecovery, item)
		case isItem && sub == "Monthly Tests":
			sr.monthly = append(sr.monthly, item)
		case isItem && sub == "Quarterly Drills":
			sr.quarterly = append(sr.quarterly, item)
		case isItem && sub == "Annual Review":
			sr.annual = append(sr.annual, item)
		}
		if sub == "Escalation Path" {
			if m := seedEscalation.FindStringSubmatch(line); m != nil {
				sr.escalation = append(sr.escalation, m[1]+" ("+m[2]+")")
			}
		}
	}
	for i := range sr.scenarios {
		s := &sr.scenarios[i]
		row, ok := table[s.name]
		if !ok {
			t.Fatalf("seed: no quick reference row for %q", s.name)
		}
		s.rto, s.rpo, s.contact = row[0], row[1], row[2]
	}
	return sr
}

func hoursText(d time.Duration) string {
	h := int(d.Hours())
	if h == 1 {
		return "1 hour"
	}
	return strconv.Itoa(h) + " hours"
}

func TestDefaultRunbookMatchesSeed(t *testing.T) {
	seed := readSeed(t)
	r := Default()
	if len(seed.scenarios) != 4 || len(r.Scenarios) != len(seed.scenarios) {
		t.Fatalf("scenarios: seed has %d, embedded runbook %d", len(seed.scenarios), len(r.Scenarios))
	}
	for i, want := range seed.scenarios {
		got := r.Scenarios[i]
		if got.Name != want.name {
			t.Errorf("scenario %d: name %q, seed says %q", i+1, got.Name, want.name)
		}
		if hoursText(got.RTO) != want.rto || hoursText(got.RPO) != want.rpo || got.Contact != want.contact {
			t.Errorf("%s: RTO %s RPO %s contact %q; seed says %s, %s, %q", got.Name, hoursText(got.RTO), hoursText(got.RPO), got.Contact, want.rto, want.rpo, want.contact)
		}
		if got.RTONote != want.totalRTONotes {
			t.Errorf("%s: rto_note %q, seed says Total RTO: %q", got.Name, got.RTONote, want.totalRTONotes)
		}
		if strings.Join(got.Symptoms, "|") != strings.Join(want.symptoms, "|") {
			t.Errorf("%s: symptoms %q, seed says %q", got.Name, got.Symptoms, want.symptoms)
		}
		if len(got.Steps) != len(want.titles) {
			t.Errorf("%s: %d steps, seed has %d", got.Name, len(got.Steps), len(want.titles))
			continue
		}
		for j, st := range got.Steps {
			if st.Title != want.titles[j] || st.Budget != want.budgets[j] || st.Timing != want.timings[j] {
				t.Errorf("%s step %d: %q %s %q; seed says %q %s %q", got.Name, j+1, st.Title, st.Budget, st.Timing, want.titles[j], want.budgets[j], want.timings[j])
			}
		}
	}
	check := func(what string, got, want []string) {
		t.Helper()
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s:\n got %q\nseed %q", what, got, want)
		}
	}
	if len(seed.postRecovery) != 11 {
		t.Fatalf("seed post-recovery checklist has %d items, want 11", len(seed.postRecovery))
	}
	check("post-recovery checklist", r.PostRecovery, seed.postRecovery)
	check("monthly tests", r.Testing.Monthly, seed.monthly)
	check("quarterly drills", r.Testing.Quarterly, seed.quarterly)
	check("annual review", r.Testing.Annual, seed.annual)

	var esc []string
	for _, e := range r.Escalation {
		esc = append(esc, e.Role+" ("+seedRange(e)+")")
	}
	check("escalation path", esc, seed.escalation)
}

// seedRange writes an escalation level the way the seed does: "0-30 minutes", "1-2 hours", "2+ hours".
func seedRange(e Escalation) string {
	unit := func(d time.Duration) (int, string) {
		if d >= time.Hour && d%time.Hour == 0 {
			return int(d.Hours()), "hours"
		}
		return int(d.Minutes()), "minutes"
	}
	f, fu := unit(e.From)
	if e.Until == 0 {
		return strconv.Itoa(f) + "+ " + fu
	}
	u, uu := unit(e.Until)
	if fu != uu && e.From != 0 {
		// "30-60 minutes": the seed keeps the unit of the start.
		return strconv.Itoa(f) + "-" + strconv.Itoa(int(e.Until/time.Minute)) + " " + fu
	}
	return strconv.Itoa(f) + "-" + strconv.Itoa(u) + " " + uu
}

func TestSeedPlansThatExceedTheirRTO(t *testing.T) {
	r := Default()
	want := map[string]time.Duration{
		"database-corruption":    140 * time.Minute,
		"infrastructure-failure": 235 * time.Minute,
		"regional-outage":        240 * time.Minute,
		"ransomware":             300 * time.Minute,
	}
	for id, planned := range want {
		s, ok := r.Scenario(id)
		if !ok {
			t.Fatalf("no scenario %q", id)
		}
		if s.Planned() != planned {
			t.Errorf("%s: planned %s, want %s", id, s.Planned(), planned)
		}
		exceeds := id == "database-corruption" || id == "ransomware"
		if s.PlanExceedsRTO() != exceeds {
			t.Errorf("%s: PlanExceedsRTO %v, want %v", id, s.PlanExceedsRTO(), exceeds)
		}
	}
	_, problems := Parse("runbook.yaml", defaultYAML)
	if HasErrors(problems) || len(problems) != 2 {
		t.Errorf("embedded runbook: want exactly the two plan warnings, got %q", problems)
	}
	if _, ok := r.Scenario(DefaultScenario); !ok {
		t.Errorf("DefaultScenario %q is not in the runbook", DefaultScenario)
	}
}
