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

// runInjectDrill is a drill with injects: a tabletop (--tabletop), or a sandbox drill
// whose injects are applied for real (--injects).
func runInjectDrill(ctx context.Context, a *app, o *drillOptions) error {
	if o.auto || o.noConsole {
		return usagef("--tabletop and --injects are for a team at the console: --auto and --no-console do not apply")
	}
	if a.backupDir != "" || a.stateDir != "" {
		return usagef("a drill uses its sandbox's settings only: --backup-dir and --state-dir do not apply")
	}
	if o.tabletop {
		return runTabletop(ctx, a, o)
	}
	return runSandboxWithInjects(ctx, a, o)
}

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
		return nil, nil, usagef("the runbook has no scenario %q: %s", scenario, strings.Join(ids, ", "))
	}
	if file == "" {
		return sc, nil, nil
	}
	var titles []string
	for _, st := range sc.Steps {
		titles = append(titles, st.Title)
	}
	injects, err := inject.Load(file, sc.ID, titles)
	var perr inject.Errors
	if errors.As(err, &perr) {
		return nil, nil, usageError{fmt.Errorf("inject file has errors:\n%w", err)}
	}
	return sc, injects, err
}

// runTabletop opens the console for a tabletop exercise: no sandbox and no server, every
// step talked through and recorded, and nothing of this machine's production settings
// read. Its journals go in a directory of their own (--dir, else drills/tabletop under
// the default state directory), never production's incidents/: so a tabletop neither
// lists nor resumes a real incident, a real incident never lists a tabletop, and the
// team's record of the exercise is kept for its review (drconsole report --state-dir DIR).
func runTabletop(ctx context.Context, a *app, o *drillOptions) error {
	if o.keep || o.seed != 0 || o.backup != "" {
		return usagef("--tabletop has no sandbox: --keep, --seed and --backup do not apply")
	}
	getenv := scrubProduction(a.getenv)
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
	dir := o.dir
	if dir == "" {
		dir = filepath.Join(checklists.StateDir("", getenv), "drills", "tabletop")
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
		Injects: injects, InjectScenario: sc.ID,
	}
	in := &app{stdin: a.stdin, stdout: a.stdout, stderr: a.stderr, getenv: getenv, self: a.self}
	return tabletopConsole(ctx, in, opt)
}

func injectsSetting(file string, n int) string {
	if file == "" {
		return "none (--injects FILE or example)"
	}
	return fmt.Sprintf("%d from %s", n, file)
}

// runSandboxWithInjects is drill with --injects: the sandbox drill, whose injects are
// shown when due and applied for real to the sandbox at that moment.
func runSandboxWithInjects(ctx context.Context, a *app, o *drillOptions) error {
	if _, ok := drill.Sizes[o.size]; !ok {
		return usagef("--size %q: small, medium or large", o.size)
	}
	_, injects, err := loadInjects(checklists.Default(), o.scenario, o.injects)
	if err != nil {
		return err
	}
	extra, pass, err := drillChannels(a)
	if err != nil {
		return err
	}
	scrubProduction(a.getenv)
	if removed, err := drill.RemoveOrphans(o.dir); err != nil {
		fmt.Fprintf(a.stderr, "drill: a sandbox left by a drill that died could not be removed: %v\n", err)
	} else {
		for _, d := range removed {
			fmt.Fprintf(a.stderr, "drill: removed %s, left by a drill that died\n", d)
		}
	}
	seed := o.seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano()%1_000_000) + 1
	}
	fmt.Fprintf(a.stderr, "drill: building a %s sandbox for %s (seed %d), with %d injects from %s\n", o.size, o.scenario, seed, len(injects), o.injects)
	sb, err := drill.Build(ctx, drill.Options{Scenario: o.scenario, Size: o.size, Seed: seed, Parent: o.dir, ConfigExtra: extra,
		Log: func(s string) { fmt.Fprintln(a.stderr, "drill: "+s) }})
	if err != nil {
		return usageOrErr(err)
	}
	sb.PassEnv = pass
	if o.keep {
		if err := sb.Keep(); err != nil {
			fmt.Fprintf(a.stderr, "drill: %v (the next drill may take the sandbox for a dead one's and remove it)\n", err)
		}
	} else {
		defer func() {
			if err := sb.Remove(); err != nil {
				fmt.Fprintf(a.stderr, "drill: %v\n", err)
			}
		}()
	}
	printSandbox(a, sb, seed, false)
	env := sb.Env()
	in := &app{stdin: a.stdin, stdout: a.stdout, stderr: a.stderr, getenv: func(k string) string { return env[k] },
		configPath: sb.Config, stateDir: sb.StateDir, self: a.self}
	err = runConsole(ctx, in, &consoleOptions{drill: true, key: keyFlags{gpgKey: sb.Secret},
		injects: injects, injectScenario: o.scenario, applyInject: sb.ApplyInject})
	fmt.Fprintf(a.stdout, "drill over (seed %d): %s\n", seed, sb.Fault)
	fmt.Fprintf(a.stdout, "answer    %s\n", answer(sb))
	if o.keep {
		fmt.Fprintf(a.stdout, "the sandbox is kept in %s; remove it with: drconsole drill --remove %s\n", sb.Dir, sb.Dir)
	}
	return err
}
