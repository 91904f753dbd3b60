package main

import (
	"errors"
	"fmt"
	"os"

	"drconsole/checklists"
	"drconsole/recovery"
)

// incidentJournal puts a CLI restore on record: it joins the open incident, or starts one
// for --scenario, so a recovery done without the console is in the journal and the report.
func (a *app) incidentJournal(scenarioID string, drill bool) (*checklists.Journal, error) {
	stateDir := checklists.StateDir(a.stateDir, a.getenv)
	j, err := checklists.OpenLatest(stateDir)
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

// journalEvents records a run's stage changes and result; figures are not journaled.
func journalEvents(j *checklists.Journal, backup string) func(recovery.Event) {
	return func(e recovery.Event) {
		switch {
		case e.Final:
			ev := checklists.Event{Type: checklists.EventRestoreFinished, Backup: backup, Bytes: e.Read, Result: checklists.ResultOK}
			if e.Err != nil {
				ev.Result, ev.Error = checklists.ResultFailed, e.Err.Error()
				if errors.Is(e.Err, recovery.ErrCancelled) {
					ev.Result = checklists.ResultCancelled
				}
			}
			j.Record(ev)
		case e.Message != "" && !isToolLine(e.Message):
			j.Record(checklists.Event{Type: checklists.EventRestoreProgress, Milestone: fmt.Sprintf("%s: %s", e.Stage, e.Message)})
		}
	}
}

func journalChecks(j *checklists.Journal, checks []recovery.CheckResult) {
	for _, c := range checks {
		res := checklists.CheckPass
		if c.Status == recovery.CheckFail {
			res = checklists.CheckFail
		}
		detail := fmt.Sprintf("%s: %s", c.Status, c.Actual)
		if c.Expected != "" {
			detail += " (live: " + c.Expected + ")"
		}
		j.Record(checklists.Event{Type: checklists.EventCheckResult, Title: c.Name, Result: res, Detail: detail})
	}
}

func journalBackupChosen(j *checklists.Journal, src recovery.Source) {
	ev := checklists.Event{Type: checklists.EventBackupChosen, Backup: src.Backup.Name, Location: src.Location.Name(), Bytes: src.Backup.Size}
	if !src.Backup.Time.IsZero() {
		t := src.Backup.Time
		ev.BackupTime = &t
	}
	j.Record(ev)
}
