package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"drconsole/checklists"
)

func newIncidentsCmd(a *app) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:     "incidents [flags]",
		Short:   "list incidents and drills on record, open ones first",
		Example: "  drconsole incidents\n  drconsole incidents --json | jq '.[] | select(.closed | not)'",
		Args:    noArgs(""),
		RunE:    func(c *cobra.Command, _ []string) error { return runIncidents(a, asJSON) },
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	return c
}

func runIncidents(a *app, asJSON bool) error {
	stateDir := checklists.StateDir(a.stateDir, a.getenv)
	list, err := checklists.List(stateDir)
	if err != nil {
		return err
	}
	if asJSON {
		if list == nil {
			list = []checklists.IncidentSummary{}
		}
		return writeJSON(a.stdout, list)
	}
	if len(list) == 0 {
		fmt.Fprintf(a.stdout, "No incidents in %s.\n", checklists.IncidentsDir(stateDir))
		return nil
	}
	fmt.Fprintf(a.stdout, "%-50s %-7s %-6s %-16s %-10s %s\n", "INCIDENT", "STATE", "KIND", "STARTED (UTC)", "STEPS", "OPERATOR")
	for _, s := range list {
		if s.Err != "" {
			fmt.Fprintf(a.stdout, "%-50s unreadable: %s\n", s.ID, s.Err)
			continue
		}
		state := "open"
		if s.Closed {
			state = "closed"
		}
		kind := "real"
		if s.Drill {
			kind = "drill"
		}
		fmt.Fprintf(a.stdout, "%-50s %-7s %-6s %-16s %-10s %s\n", s.ID, state, kind, s.Started.UTC().Format("2006-01-02 15:04"),
			fmt.Sprintf("%d/%d", s.StepsDone, s.Steps), s.Operator)
		for _, w := range s.Warnings {
			fmt.Fprintf(a.stderr, "warning: %s\n", w)
		}
	}
	return nil
}
