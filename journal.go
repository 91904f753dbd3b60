package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"drconsole/checklists"
)

// staleIncident is how long an open incident may have been quiet before a command-line
// restore no longer joins it without being told to.
const staleIncident = 12 * time.Hour

// journalChoice is how a command-line restore chooses its incident.
type journalChoice struct {
	scenario    string // the scenario of an incident started for it
	scenarioSet bool   // --scenario was given: an open incident of another scenario is not joined silently
	drill       bool
	incident    string // --incident: join this one
	newIncident bool   // --new-incident: start one even if one is open
}

// incidentJournal puts a CLI restore on record. It joins the open incident of its kind (a
// drill joins a drill, a real restore a real incident) and says so, unless that incident
// is stale or of another scenario than --scenario names: then it asks on a terminal, and
// otherwise refuses until --incident or --new-incident says which. With no open incident
// it starts one for the scenario.
func (a *app) incidentJournal(ctx context.Context, c journalChoice) (*checklists.Journal, error) {
	stateDir := checklists.StateDir(a.stateDir, a.getenv)
	if c.incident != "" {
		j, err := checklists.Resume(stateDir, c.incident)
		if err != nil {
			return nil, err
		}
		if inc := j.Incident(); inc.Drill != c.drill {
			j.Close()
			return nil, usagef("incident %s is %s; this restore is %s", inc.ID, kindWord(inc.Drill), kindWord(c.drill))
		}
		fmt.Fprintf(a.stderr, "drconsole: recording in incident %s, as asked\n", j.ID())
		return j, nil
	}
	if !c.newIncident {
		j, err := checklists.OpenLatestOfKind(stateDir, c.drill)
		switch {
		case err == nil:
			inc := j.Incident()
			quiet := time.Since(inc.LastEvent)
			var why string
			switch {
			case c.scenarioSet && inc.Scenario != c.scenario:
				why = fmt.Sprintf("it is for %s, not %s", inc.Scenario, c.scenario)
			case quiet > staleIncident:
				why = fmt.Sprintf("nothing was recorded in it for %s", shortDuration(quiet.Truncate(time.Minute)))
			}
			if why == "" {
				fmt.Fprintf(a.stderr, "drconsole: joining open %s %s (%s, started %s ago); --new-incident starts another\n",
					kindWord(inc.Drill), inc.ID, inc.ScenarioName, shortDuration(time.Since(inc.Started).Truncate(time.Second)))
				return j, nil
			}
			if !a.stdinIsTerminal() {
				j.Close()
				return nil, usagef("an open %s, %s, is not the obvious one to record this restore in (%s): join it with --incident %s, or start another with --new-incident", kindWord(inc.Drill), inc.ID, why, inc.ID)
			}
			if a.confirm(ctx, fmt.Sprintf("An open %s, %s, %s. Record this restore in it? Type yes to join it, anything else starts a new one: ", kindWord(inc.Drill), inc.ID, why), "yes") {
				return j, nil
			}
			j.Close()
		case !errors.Is(err, checklists.ErrNoOpenIncident) && !errors.Is(err, checklists.ErrNoIncident):
			return nil, err
		}
	}
	rb, _, err := loadRunbook(a)
	if err != nil {
		return nil, err
	}
	sc, ok := rb.Scenario(c.scenario)
	if !ok {
		return nil, usagef("no scenario %q in the runbook (see drconsole runbook show)", c.scenario)
	}
	host, _ := os.Hostname()
	j, err := checklists.StartIncident(checklists.StartOptions{StateDir: stateDir, Runbook: rb, Scenario: sc, Drill: c.drill, Operator: checklists.Operator(a.getenv), Host: host})
	if err == nil {
		fmt.Fprintf(a.stderr, "drconsole: started %s %s (%s)\n", kindWord(c.drill), j.ID(), sc.Name)
	}
	return j, err
}

func kindWord(drill bool) string {
	if drill {
		return "drill"
	}
	return "incident"
}

// restoreStep is the step of the incident's plan a restore belongs to: its restore step,
// so that the CLI's restore lands where the console's would.
func restoreStep(j *checklists.Journal) int {
	if j == nil {
		return 0
	}
	for i, s := range j.Incident().Plan.Steps {
		if s.Kind == checklists.KindRestore {
			return i + 1
		}
	}
	return 0
}
