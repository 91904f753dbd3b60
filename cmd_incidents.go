package main

import (
	"context"
	"fmt"

	"drconsole/checklists"
)

func init() {
	register(&command{
		name:    "incidents",
		usage:   "incidents [--json]",
		summary: "list incidents and drills on record, open ones first",
		run:     runIncidents,
	})
}

func runIncidents(ctx context.Context, a *app, args []string) error {
	c := commands["incidents"]
	fs := a.flags(c)
	asJSON := fs.Bool("json", false, "print the list as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("incidents takes no arguments (got %q)", pos[0])
	}
	stateDir := checklists.StateDir(a.stateDir, a.getenv)
	list, err := checklists.List(stateDir)
	if err != nil {
		return err
	}
	if *asJSON {
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
