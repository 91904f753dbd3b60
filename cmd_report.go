package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"drconsole/checklists"
)

func newReportCmd(a *app) *cobra.Command {
	var asJSON bool
	var out string
	c := &cobra.Command{
		Use:   "report [INCIDENT] [flags]",
		Short: "write an incident's report as Markdown or JSON",
		Long: `Writes the report of INCIDENT (an id, a unique prefix of one, or a journal's path; default:
the most recent incident): summary, RTO and RPO achieved, the timeline against each step's
budget, commands run, a point-in-time recovery (target, base backup, WAL, timelines, recovery
point), the restore and its swap, checks, the checklist and notes.`,
		Example: "  drconsole report\n  drconsole report 20261125-2248 --json | jq .restore.result\n  drconsole report -o incident.md",
		Args:    maxArgs(1, "INCIDENT"),
		RunE: func(c *cobra.Command, args []string) error {
			return runReport(a, args, asJSON, out)
		},
	}
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
		list, err := checklists.List(stateDir)
		if err != nil {
			return err
		}
		var latest *checklists.IncidentSummary
		for i := range list {
			if s := &list[i]; s.Err == "" && (latest == nil || s.Started.After(latest.Started)) {
				latest = s
			}
		}
		if latest != nil {
			path = latest.Path
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
	var data []byte
	if asJSON {
		if data, err = json.MarshalIndent(r, "", "  "); err != nil {
			return err
		}
		data = append(data, '\n')
	} else {
		data = []byte(r.Markdown())
	}
	if out == "" {
		_, err = a.stdout.Write(data)
		return err
	}
	return writeFileAtomic(out, data)
}

// reportNow is the clock of the report command; tests replace it.
var reportNow = time.Now
