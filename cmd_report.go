package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"drconsole/checklists"
)

func init() {
	register(&command{
		name:    "report",
		usage:   "report [INCIDENT] [--json] [-o FILE]",
		summary: "write an incident's report (default: the most recent incident) as Markdown or JSON",
		run:     runReport,
	})
}

func runReport(ctx context.Context, a *app, args []string) error {
	c := commands["report"]
	fs := a.flags(c)
	asJSON := fs.Bool("json", false, "write JSON instead of Markdown")
	out := fs.String("o", "", "write to `file` instead of standard output")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("report takes at most one INCIDENT, got %d", len(pos))
	}
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
	if *asJSON {
		if data, err = json.MarshalIndent(r, "", "  "); err != nil {
			return err
		}
		data = append(data, '\n')
	} else {
		data = []byte(r.Markdown())
	}
	if *out == "" {
		_, err = a.stdout.Write(data)
		return err
	}
	return writeFileAtomic(*out, data)
}

// reportNow is the clock of the report command; tests replace it.
var reportNow = time.Now
