package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"drconsole/checklists"
	"drconsole/drill"
	"drconsole/drill/inject"
	"drconsole/ui"
)

// errTabletopServer is why a tabletop's console restores nothing.
var errTabletopServer = errors.New("a tabletop exercise has no server: restores are talked through and recorded, not run")

// tabletopConsole runs a tabletop's console; tests replace it to drive the console
// without a terminal.
var tabletopConsole = runConsoleProgram

// scrubProduction drops every production setting from the process's environment (the
// libraries read some themselves) and returns a getenv that never returns one either.
func scrubProduction(getenv func(string) string) func(string) string {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); productionEnv(k) {
			os.Unsetenv(k)
		}
	}
	return func(k string) string {
		if productionEnv(k) {
			return ""
		}
		return getenv(k)
	}
}

// loadInjects reads --injects for a scenario of the runbook, or none.
func loadInjects(rb *checklists.Runbook, scenario, file string) (*checklists.Scenario, []inject.Inject, error) {
	sc, ok := rb.Scenario(scenario)
	if !ok {
		var ids []string
		for _, s := range rb.Scenarios {
			ids = append(ids, s.ID)
		}
		return nil, nil, usagef("unknown scenario %q (one of: %s)", scenario, strings.Join(ids, ", "))
	}
	if file == "" {
		return sc, nil, nil
	}
	var titles []string
	for _, st := range sc.Steps {
		titles = append(titles, st.Title)
	}
	// Whatever is wrong, a file missing or unreadable as much as one with mistakes, is
	// bad input on the command line.
	injects, err := inject.Load(file, sc.ID, titles)
	var perr inject.Errors
	switch {
	case errors.As(err, &perr):
		return nil, nil, usageError{fmt.Errorf("inject file has errors:\n%w", err)}
	case err != nil:
		return nil, nil, usageError{err}
	}
	return sc, injects, nil
}

// runTabletop opens the console for a tabletop exercise: no sandbox and no server, every
// step talked through and recorded, and nothing of this machine's production settings
// read. Its journals go in a directory of their own (--dir, else drills/tabletop under
// the state directory, by the one rule every drconsole command follows:
// $XDG_STATE_HOME/drconsole, else ~/.local/state/drconsole, beside the drills/ its
// scorecard goes in), never production's incidents/: so a tabletop neither lists nor
// resumes a real incident, a real incident never lists a tabletop, and the team's record
// of the exercise is kept for its review (drconsole report --state-dir DIR).
func runTabletop(ctx context.Context, a *app, o *drillOptions) error {
	if o.auto || o.noConsole {
		return usagef("--tabletop is for a team at the console: --auto and --no-console do not apply")
	}
	if o.keep || o.seed != 0 || o.backup != "" || o.size != "small" {
		return usagef("--tabletop has no sandbox: --keep, --seed, --size and --backup do not apply")
	}
	// Read before the production settings are dropped: XDG_STATE_HOME is one of them, and
	// the journals and the scorecard must both follow it.
	stateDir := checklists.StateDir("", a.getenv)
	records := drill.RecordDir(stateDir)
	rb := checklists.Default()
	if a.runbookPath != "" { // the team's own runbook, named on the command line
		r, problems, err := checklists.Load(a.runbookPath)
		if err != nil {
			for _, p := range problems {
				fmt.Fprintln(a.stderr, p)
			}
			return usageError{err}
		}
		rb = r
	}
	sc, injects, err := loadInjects(rb, o.scenario, o.injects)
	if err != nil {
		return err
	}
	getenv := scrubProduction(a.getenv)
	dir := o.dir
	if dir == "" {
		dir = filepath.Join(records, "tabletop")
	}
	list, err := checklists.List(dir)
	if err != nil {
		return err
	}
	for _, inc := range list {
		if !inc.Drill && inc.Err == "" {
			return usagef("%s holds a real incident (%s): a tabletop's journals go in a directory of their own (--dir)", dir, inc.ID)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "tabletop: %s: no sandbox and no server; every step is talked through and recorded, nothing is run\n", sc.Name)
	fmt.Fprintf(a.stderr, "tabletop: the journal goes in %s (drconsole report --state-dir %s)\n", checklists.IncidentsDir(dir), dir)
	if len(injects) > 0 {
		fmt.Fprintf(a.stderr, "tabletop: %d injects from %s, shown when due\n", len(injects), o.injects)
	}
	host, _ := os.Hostname()
	opt := ui.Options{
		Settings: []ui.Setting{
			{Name: "server", Value: "none: a tabletop exercise; commands are recorded, nothing is run, restored or swapped"},
			{Name: "locations", Value: "none: backups are talked through"},
			{Name: "scenario", Value: sc.Name + " (" + sc.ID + ")"},
			{Name: "journals", Value: checklists.IncidentsDir(dir)},
			{Name: "injects", Value: injectsSetting(o.injects, len(injects))},
		},
		Context: ctx, StateDir: dir, Runbook: rb, ConnErr: errTabletopServer, Drill: true,
		Operator: checklists.Operator(getenv), Host: host, Work: &sync.WaitGroup{},
		Injects: injects, InjectScenario: sc.ID, Scenario: sc.ID,
	}
	in := &app{stdin: a.stdin, stdout: a.stdout, stderr: a.stderr, getenv: getenv, self: a.self}
	// Scored as every drill is, without the data: the times, the checklist, the escalations.
	// The tabletop scored is the one this console worked on (other tabletops may be open
	// in the directory): the last written to since it opened.
	since := time.Now()
	sd := &drillScorer{records: records, score: func() (*scored, error) {
		path, err := workedOn(dir, since)
		if err != nil {
			return nil, err
		}
		out := &scored{}
		var inc *checklists.Incident
		scen := sc
		if path != "" {
			if inc, _, err = checklists.ReadJournal(path); err != nil {
				return nil, err
			}
			if other, ok := rb.Scenario(inc.Scenario); ok {
				scen = other
			}
			out.report = checklists.BuildReport(inc, nil, time.Now()).Markdown()
		}
		out.Scorecard = drill.Score(drill.ScoreInput{Mode: drill.ModeTabletop, Incident: inc, Runbook: rb, Scenario: scen, Now: time.Now()})
		return out, nil
	}}
	opt.Score = sd.atClose
	err = sd.atExit(a, tabletopConsole(ctx, in, opt))
	if h := (hungUp{}); errors.As(err, &h) { // its journal stays: it can be resumed
		again := "drconsole drill --tabletop --scenario " + sc.ID
		if o.dir != "" {
			again += " --dir " + o.dir
		}
		err = hungUp{then: "the tabletop stays open (" + again + " resumes it)"}
	}
	return err
}

// workedOn is the journal in dir written to last, if that was at or after since: the
// tabletop a console opened at since worked on; "" when it started none.
func workedOn(dir string, since time.Time) (string, error) {
	list, err := checklists.List(dir)
	if err != nil {
		return "", err
	}
	path, last := "", since
	for _, inc := range list {
		if inc.Err == "" && !inc.LastEvent.Before(last) {
			path, last = inc.Path, inc.LastEvent
		}
	}
	return path, nil
}

func injectsSetting(file string, n int) string {
	if file == "" {
		return "none (--injects FILE or example)"
	}
	return fmt.Sprintf("%d from %s", n, file)
}
