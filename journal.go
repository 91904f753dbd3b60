package main

import (
	"errors"
	"os"

	"drconsole/checklists"
)

// incidentJournal puts a CLI restore on record: it joins the open incident of its kind
// (a drill joins a drill, a real restore a real incident), or starts one for --scenario,
// so a recovery done without the console is in the journal and the report.
func (a *app) incidentJournal(scenarioID string, drill bool) (*checklists.Journal, error) {
	stateDir := checklists.StateDir(a.stateDir, a.getenv)
	j, err := checklists.OpenLatestOfKind(stateDir, drill)
	if err == nil {
		return j, nil
	}
	if !errors.Is(err, checklists.ErrNoOpenIncident) && !errors.Is(err, checklists.ErrNoIncident) {
		return nil, err
	}
	rb, _, err := loadRunbook(a)
	if err != nil {
		return nil, err
	}
	sc, ok := rb.Scenario(scenarioID)
	if !ok {
		return nil, usagef("no scenario %q in the runbook (see drconsole runbook show)", scenarioID)
	}
	host, _ := os.Hostname()
	return checklists.StartIncident(checklists.StartOptions{StateDir: stateDir, Runbook: rb, Scenario: sc, Drill: drill, Operator: checklists.Operator(a.getenv), Host: host})
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
