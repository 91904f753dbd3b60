package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"drconsole/checklists"
	"drconsole/storage"
)

func newRunbookCmd(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:   "runbook",
		Short: "check, print or export the runbook",
		Long: `The runbook is data: scenarios with their RTO, RPO, contact and timed steps, the
post-recovery and testing checklists, contacts, escalation and alert channels. drconsole
carries the Disaster Recovery Runbook; --runbook FILE (or runbook: in the config file) uses
your own.`,
		Args: noArgs("; say what to do: runbook validate, show or export"),
		RunE: func(c *cobra.Command, _ []string) error {
			return usagef("say what to do: runbook validate, runbook show or runbook export")
		},
	}
	var vJSON, sJSON, force bool
	var out string
	validate := &cobra.Command{
		Use:     "validate [FILE] [flags]",
		Short:   "check a runbook file and report every problem as FILE:LINE:COL",
		Example: "  drconsole runbook validate team-runbook.yaml\n  drconsole runbook validate --json",
		Args:    maxArgs(1, "FILE"),
		RunE:    func(c *cobra.Command, args []string) error { return runbookValidate(a, args, vJSON) },
	}
	validate.Flags().BoolVar(&vJSON, "json", false, "print the problems as JSON")
	show := &cobra.Command{
		Use:     "show [SCENARIO] [flags]",
		Short:   "print the runbook, or one scenario's plan in detail",
		Example: "  drconsole runbook show\n  drconsole runbook show database-corruption\n  drconsole runbook show --json | jq '.scenarios[].id'",
		Args:    maxArgs(1, "SCENARIO"),
		RunE:    func(c *cobra.Command, args []string) error { return runbookShow(a, args, sJSON) },
	}
	show.Flags().BoolVar(&sJSON, "json", false, "print the runbook as JSON")
	export := &cobra.Command{
		Use:     "export [flags]",
		Short:   "write the embedded runbook as YAML, to start your own from",
		Example: "  drconsole runbook export -o team-runbook.yaml",
		Args:    noArgs("; use -o FILE"),
		RunE:    func(c *cobra.Command, _ []string) error { return runbookExport(a, out, force) },
	}
	export.Flags().StringVarP(&out, "output", "o", "", "write to `file` instead of standard output")
	export.Flags().BoolVar(&force, "force", false, "overwrite the -o file if it exists")
	c.AddCommand(validate, show, export)
	return c
}

// loadRunbook returns the runbook chosen by --runbook, or the embedded default. Warnings
// are returned for the caller to show; errors are printed to stderr, one a line, and
// reported as one error.
func loadRunbook(a *app) (*checklists.Runbook, []checklists.Problem, error) {
	path := a.runbookPath
	if path == "" {
		// The configuration file may name the team's runbook; --runbook wins over it.
		if cfg, err := storage.LoadConfig(a.configPath, a.getenv); err == nil {
			path = cfg.Runbook
		} else if a.configPath != "" {
			return nil, nil, usageError{err}
		}
	}
	if path == "" {
		return checklists.Default(), nil, nil
	}
	r, problems, err := checklists.Load(path)
	if errors.Is(err, checklists.ErrInvalidRunbook) {
		for _, p := range problems {
			fmt.Fprintln(a.stderr, p)
		}
		return nil, problems, fmt.Errorf("runbook %s has errors (listed above); check it with drconsole runbook validate", path)
	}
	if err != nil {
		return nil, nil, err
	}
	var warnings []checklists.Problem
	for _, p := range problems {
		if p.Warning {
			warnings = append(warnings, p)
		}
	}
	return r, warnings, nil
}

func runbookValidate(a *app, pos []string, asJSON bool) error {
	var err error
	name, data := "runbook.yaml (embedded)", checklists.DefaultYAML()
	switch {
	case len(pos) == 1:
		name = pos[0]
	case a.runbookPath != "":
		name = a.runbookPath
	default:
		if cfg, err := storage.LoadConfig(a.configPath, a.getenv); err == nil && cfg.Runbook != "" {
			name = cfg.Runbook
		}
	}
	if name != "runbook.yaml (embedded)" {
		if data, err = os.ReadFile(name); err != nil {
			return fmt.Errorf("read runbook: %w", err)
		}
	}
	_, problems := checklists.Parse(name, data)
	errs, warns := 0, 0
	for _, p := range problems {
		if p.Warning {
			warns++
		} else {
			errs++
		}
	}
	if asJSON {
		out := struct {
			File     string               `json:"file"`
			Valid    bool                 `json:"valid"`
			Problems []checklists.Problem `json:"problems"`
		}{name, errs == 0, problems}
		if out.Problems == nil {
			out.Problems = []checklists.Problem{}
		}
		if err := writeJSON(a.stdout, out); err != nil {
			return err
		}
	} else {
		for _, p := range problems {
			fmt.Fprintln(a.stderr, p)
		}
		if errs == 0 {
			fmt.Fprintf(a.stdout, "%s: valid (%s)\n", name, plural(warns, "warning"))
		}
	}
	if errs > 0 {
		return fmt.Errorf("%s has %s and %s", name, plural(errs, "error"), plural(warns, "warning"))
	}
	return nil
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func runbookExport(a *app, out string, force bool) error {
	if out == "" {
		_, err := a.stdout.Write(checklists.DefaultYAML())
		return err
	}
	if !force {
		if _, err := os.Stat(out); err == nil {
			return fmt.Errorf("%s already exists; not overwriting it without --force", out)
		}
	}
	return writeFileAtomic(out, checklists.DefaultYAML())
}

// writeFileAtomic writes through a temporary file and a rename, so that a reader never
// sees half a file and a crash never leaves one.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func runbookShow(a *app, pos []string, asJSON bool) error {
	r, warnings, err := loadRunbook(a)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		if !asJSON {
			fmt.Fprintln(a.stderr, w)
		}
	}
	if len(pos) == 1 {
		s, ok := r.Scenario(pos[0])
		if !ok {
			return usagef("no scenario %q in the runbook; scenarios: %s", pos[0], scenarioIDs(r))
		}
		if asJSON {
			return writeJSON(a.stdout, s)
		}
		showScenario(a.stdout, s, true)
		return nil
	}
	if asJSON {
		return writeJSON(a.stdout, r)
	}
	showRunbook(a.stdout, r)
	return nil
}

func scenarioIDs(r *checklists.Runbook) string {
	ids := make([]string, len(r.Scenarios))
	for i, s := range r.Scenarios {
		ids[i] = s.ID
	}
	return strings.Join(ids, ", ")
}

func showRunbook(w io.Writer, r *checklists.Runbook) {
	fd := checklists.FormatDuration
	fmt.Fprintf(w, "%s", r.Title)
	if r.Version != "" {
		fmt.Fprintf(w, " (version %s", r.Version)
		if r.LastUpdated != "" {
			fmt.Fprintf(w, ", last updated %s", r.LastUpdated)
		}
		fmt.Fprint(w, ")")
	}
	fmt.Fprintln(w)
	if r.Objectives.RTO > 0 {
		fmt.Fprintf(w, "Objectives: RTO < %s, RPO < %s\n", fd(r.Objectives.RTO), fd(r.Objectives.RPO))
	}
	fmt.Fprintln(w, "\nScenarios")
	for i := range r.Scenarios {
		fmt.Fprintln(w)
		showScenario(w, &r.Scenarios[i], false)
	}
	if len(r.Backups.Locations) > 0 {
		fmt.Fprintln(w, "\nBackup locations")
		for _, l := range r.Backups.Locations {
			fmt.Fprintf(w, "  %-13s %s", l.Name, l.URL)
			if l.Retention != "" {
				fmt.Fprintf(w, " (%s retention)", l.Retention)
			}
			fmt.Fprintln(w)
		}
	}
	list := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s\n", title)
		for _, it := range items {
			fmt.Fprintf(w, "  [ ] %s\n", it)
		}
	}
	list("Post-recovery checklist", r.PostRecovery)
	list("Monthly tests", r.Testing.Monthly)
	list("Quarterly drills", r.Testing.Quarterly)
	list("Annual review", r.Testing.Annual)
	if len(r.Escalation) > 0 {
		fmt.Fprintln(w, "\nEscalation path")
		for i, e := range r.Escalation {
			when := fd(e.From) + "+"
			if e.Until > 0 {
				when = fd(e.From) + "–" + fd(e.Until)
			}
			fmt.Fprintf(w, "  %d. %-20s %s\n", i+1, e.Role, when)
		}
	}
	if len(r.Contacts.Primary)+len(r.Contacts.External) > 0 {
		fmt.Fprintln(w, "\nContacts")
		for _, c := range append(append([]checklists.Contact{}, r.Contacts.Primary...), r.Contacts.External...) {
			fmt.Fprintf(w, "  %-27s %s\n", c.Role, c.Email)
		}
	}
	if len(r.Alerts.Channels) > 0 {
		fmt.Fprintln(w, "\nAlert channels")
		for _, c := range r.Alerts.Channels {
			fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Target)
		}
	}
}

// showScenario prints a scenario's plan; detail adds descriptions, commands and items.
// The warning that the plan exceeds the RTO is printed wherever the plan is.
func showScenario(w io.Writer, s *checklists.Scenario, detail bool) {
	fd := checklists.FormatDuration
	fmt.Fprintf(w, "%s (%s): RTO %s, RPO %s, contact %s\n", s.Name, s.ID, fd(s.RTO), fd(s.RPO), s.Contact)
	if warn := s.PlanWarning(); warn != "" {
		fmt.Fprintf(w, "  ! %s\n", warn)
	}
	if detail && len(s.Symptoms) > 0 {
		fmt.Fprintf(w, "  Symptoms: %s\n", strings.Join(s.Symptoms, "; "))
	}
	for i, st := range s.Steps {
		budget := fd(st.Budget)
		if st.Budget == 0 {
			budget = "untimed"
			if st.Timing != "" {
				budget = st.Timing
			}
		}
		fmt.Fprintf(w, "  %d. %-37s %-8s %s\n", i+1, st.Title, st.Kind, budget)
		if !detail {
			continue
		}
		if st.Description != "" {
			fmt.Fprintf(w, "     %s\n", st.Description)
		}
		if st.URL != "" {
			fmt.Fprintf(w, "     check %s\n", st.URL)
		}
		for _, c := range st.Commands {
			label := c.Note
			switch {
			case c.Platform != "" && label != "":
				label = c.Platform + ": " + label
			case c.Platform != "":
				label = c.Platform
			}
			if label != "" {
				fmt.Fprintf(w, "     # %s\n", label)
			}
			text, prefix := c.Run, "$ "
			if c.SQL != "" {
				text, prefix = c.SQL, "sql> "
			}
			for j, line := range strings.Split(text, "\n") {
				if j > 0 {
					prefix = strings.Repeat(" ", len(prefix))
				}
				fmt.Fprintf(w, "     %s%s\n", prefix, line)
			}
		}
		for _, it := range st.Items {
			fmt.Fprintf(w, "     [ ] %s\n", it)
		}
	}
	fmt.Fprintf(w, "  Planned: %s", fd(s.Planned()))
	if s.RTONote != "" {
		fmt.Fprintf(w, " (runbook: total RTO %s)", s.RTONote)
	}
	fmt.Fprintln(w)
}
