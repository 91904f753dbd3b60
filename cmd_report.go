package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"drconsole/checklists"
	"drconsole/drill"
)

func newReportCmd(a *app) *cobra.Command {
	var asJSON, drills bool
	var out string
	c := &cobra.Command{
		Use:   "report [INCIDENT] [flags]",
		Short: "write an incident's report as Markdown or JSON",
		Long: `Writes the report of INCIDENT (an id, a unique prefix of one, or a journal's path; default:
the most recent incident): summary, RTO and RPO achieved, the timeline against each step's
budget, commands run, a point-in-time recovery (target, base backup, WAL, timelines, recovery
point), the restore and its swap, checks, the checklist and notes.

With --drills: the trend of past drills (drconsole drill keeps each one's scorecard in
the state directory's drills/), for the quarterly review: each drill's time to recovery
against the RTO, data, mistakes and score, and per scenario the first, last and median
time to recovery.`,
		Example: "  drconsole report\n  drconsole report 20261125-2248 --json | jq .restore.result\n  drconsole report -o incident.md\n  drconsole report --drills",
		Args:    maxArgs(1, "INCIDENT"),
		RunE: func(c *cobra.Command, args []string) error {
			if drills {
				if len(args) > 0 {
					return usagef("--drills reports every drill: it takes no INCIDENT")
				}
				return runDrillsReport(a, asJSON, out)
			}
			return runReport(a, args, asJSON, out)
		},
	}
	c.Flags().BoolVar(&drills, "drills", false, "the trend of past drills' scorecards instead of an incident's report")
	c.Flags().BoolVar(&asJSON, "json", false, "write JSON instead of Markdown")
	c.Flags().StringVarP(&out, "output", "o", "", "write to `file` instead of standard output")
	return c
}

func runReport(a *app, pos []string, asJSON bool, out string) error {
	var err error
	stateDir := checklists.StateDir(a.stateDir, a.getenv)
	var path string
	if len(pos) == 1 {
		if path, err = checklists.FindIncident(stateDir, pos[0]); err != nil {
			return err
		}
	} else {
		// The most recent incident, open or closed.
		if path, err = checklists.LatestPath(stateDir); err != nil {
			return err
		}
		if path == "" {
			return fmt.Errorf("%w in %s", checklists.ErrNoIncident, checklists.IncidentsDir(stateDir))
		}
	}
	inc, warnings, err := checklists.ReadJournal(path)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintf(a.stderr, "warning: %s\n", w)
	}
	r := checklists.BuildReport(inc, warnings, reportNow())
	return writeReport(a, r, r.Markdown, asJSON, out)
}

// writeReport writes v as JSON or its Markdown, to out or standard output.
func writeReport(a *app, v any, markdown func() string, asJSON bool, out string) error {
	var data []byte
	var err error
	if asJSON {
		if data, err = json.MarshalIndent(v, "", "  "); err != nil {
			return err
		}
		data = append(data, '\n')
	} else {
		data = []byte(markdown())
	}
	if out == "" {
		_, err = a.stdout.Write(data)
		return err
	}
	return writeFileAtomic(out, data)
}

// reportNow is the clock of the report command; tests replace it.
var reportNow = time.Now

// drillsReport is the trend of past drills.
type drillsReport struct {
	Drills    []*drill.Scorecard `json:"drills"`
	Scenarios []drillTrend       `json:"scenarios"`
	Unread    []string           `json:"unread,omitempty"` // scorecards that could not be read
}

// drillTrend is one scenario's drills: how the time to recovery moved, over the drills
// that recovered (a drill left open, or closed before its swap, has no time to trend).
type drillTrend struct {
	Scenario  string   `json:"scenario"`
	Name      string   `json:"name"`
	Drills    int      `json:"drills"`
	Passed    int      `json:"passed"`
	Recovered int      `json:"recovered"`
	First     *float64 `json:"first_rto_seconds"` // null: none recovered
	Last      *float64 `json:"last_rto_seconds"`
	Median    *float64 `json:"median_rto_seconds"`
	Target    float64  `json:"rto_target_seconds"`
}

func runDrillsReport(a *app, asJSON bool, out string) error {
	dir := drill.RecordDir(checklists.StateDir(a.stateDir, a.getenv))
	cards, unread := drill.LoadScorecards(dir)
	for _, u := range unread {
		fmt.Fprintf(a.stderr, "warning: %s\n", u)
	}
	if len(cards) == 0 && !asJSON {
		return fmt.Errorf("no drill has been scored yet (%s is empty): run drconsole drill", dir)
	}
	r := &drillsReport{Drills: cards, Unread: unread, Scenarios: []drillTrend{}}
	if r.Drills == nil {
		r.Drills = []*drill.Scorecard{}
	}
	idx := map[string]int{}
	times := map[string][]float64{}
	for _, c := range cards {
		i, ok := idx[c.Scenario]
		if !ok {
			i = len(r.Scenarios)
			idx[c.Scenario] = i
			r.Scenarios = append(r.Scenarios, drillTrend{Scenario: c.Scenario, Name: c.ScenarioName, Target: c.RTOTarget})
		}
		t := &r.Scenarios[i]
		t.Drills++
		if c.Pass {
			t.Passed++
		}
		took, ok := c.TimeToRecovery()
		if !ok {
			continue
		}
		s := took.Seconds()
		t.Recovered++
		if t.First == nil {
			t.First = &s
		}
		t.Last = &s
		times[c.Scenario] = append(times[c.Scenario], s)
	}
	for i := range r.Scenarios {
		ts := times[r.Scenarios[i].Scenario]
		if len(ts) == 0 {
			continue
		}
		slices.Sort(ts)
		m := ts[len(ts)/2]
		if len(ts)%2 == 0 {
			m = (ts[len(ts)/2-1] + ts[len(ts)/2]) / 2
		}
		r.Scenarios[i].Median = &m
	}
	return writeReport(a, r, r.markdown, asJSON, out)
}

func (r *drillsReport) markdown() string {
	var b strings.Builder
	dur := func(s float64) string {
		return checklists.FormatDuration(time.Duration(s * float64(time.Second)).Round(time.Second))
	}
	fmt.Fprintf(&b, "# Drills: %d, %s to %s\n\n", len(r.Drills), r.Drills[0].Started.UTC().Format("2006-01-02"), r.Drills[len(r.Drills)-1].Started.UTC().Format("2006-01-02"))
	opt := func(s *float64) string {
		if s == nil {
			return "—"
		}
		return dur(*s)
	}
	b.WriteString("## Time to recovery by scenario\n\n| Scenario | Drills | Passed | First | Last | Median | RTO |\n|---|---|---|---|---|---|---|\n")
	unrecovered := 0
	for _, t := range r.Scenarios {
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %s |\n", t.Name, t.Drills, t.Passed, opt(t.First), opt(t.Last), opt(t.Median), dur(t.Target))
		unrecovered += t.Drills - t.Recovered
	}
	if unrecovered > 0 {
		fmt.Fprintf(&b, "\nThe times are of the drills that recovered; %d did not (left open, or closed before a restore was swapped in) and have none.\n", unrecovered)
	}
	b.WriteString("\n## Every drill\n\n| Started (UTC) | Scenario | Mode | Operator | Time to recovery | Data | Mistakes | Score |\n|---|---|---|---|---|---|---|---|\n")
	for _, c := range r.Drills {
		data := "not checked"
		if c.DataChecked {
			data = map[bool]string{true: "right", false: "WRONG"}[c.DataRight]
		}
		score := map[bool]string{true: "pass", false: "FAIL"}[c.Pass]
		ttr := "not recovered"
		if took, ok := c.TimeToRecovery(); ok {
			ttr = dur(took.Seconds())
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %d | %s |\n", c.Started.UTC().Format("2006-01-02 15:04"), c.ScenarioName, c.Mode, c.Operator, ttr, data, len(c.Mistakes), score)
	}
	var mistakes []string
	for _, c := range r.Drills {
		for _, m := range c.Mistakes {
			mistakes = append(mistakes, fmt.Sprintf("- %s, %s: %s", c.Started.UTC().Format("2006-01-02 15:04"), c.ScenarioName, m))
		}
	}
	if len(mistakes) > 0 {
		b.WriteString("\n## Mistakes\n\n" + strings.Join(mistakes, "\n") + "\n")
	}
	return b.String()
}
