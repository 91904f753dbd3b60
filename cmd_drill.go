package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"drconsole/checklists"
	"drconsole/drill"
	"drconsole/drill/inject"
	"drconsole/storage"
	"drconsole/ui"
)

type drillOptions struct {
	scenario  string
	size      string
	seed      uint64
	keep      bool
	dir       string
	noConsole bool
	remove    string
	auto      bool
	backup    string
	pitr      bool
	tabletop  bool
	injects   string
}

func newDrillCmd(a *app) *cobra.Command {
	o := &drillOptions{}
	c := &cobra.Command{
		Use:   "drill [flags]",
		Short: "a training sandbox: a throwaway cluster, a week of backups, the scenario's fault, and the console on it",
		Long: `Builds a sandbox under a temporary directory and opens the console on it, as a drill: a
throwaway PostgreSQL cluster (as the postgres account when run as root) reachable through
its socket only, a database shaped like the application's (quoted PascalCase tables, a large
event table), a week of encrypted, signed backups at simulated times with the runbook's
names in a primary and a secondary location, a drill key, and the scenario's fault done for
real: rows deleted and a table damaged (database-corruption), the database gone
(infrastructure-failure), the primary location unreachable (regional-outage), or users
overwritten with the last two backups infected too (ransomware).

Nothing outside the sandbox is read or touched: this machine's connection settings,
locations, keys and incidents are not used; the console sees only the sandbox's. The sandbox
is removed when the console closes, unless --keep.`,
		Example: `  drconsole drill
  drconsole drill --scenario ransomware --size medium --seed 7 --keep
  drconsole drill --no-console          # build it, print how to reach it, keep it
  drconsole drill --remove /tmp/drconsole-drill-123456
  drconsole drill --injects example     # the scenario's shipped injects, applied for real
  drconsole drill --tabletop --scenario ransomware --injects injects.yaml`,
		Args: noArgs(""),
		RunE: func(c *cobra.Command, _ []string) error { return runDrill(c.Context(), a, o) },
	}
	f := c.Flags()
	f.StringVar(&o.scenario, "scenario", drill.Corruption, "the runbook `scenario` whose fault is injected: database-corruption, infrastructure-failure, regional-outage or ransomware")
	f.StringVar(&o.size, "size", "small", "how much data: small (ready in seconds), medium or large")
	f.Uint64Var(&o.seed, "seed", 0, "seed of the data and the fault, to run the same drill again (default: from the clock, printed)")
	f.BoolVar(&o.keep, "keep", false, "keep the sandbox when the console closes")
	f.StringVar(&o.dir, "dir", "", "the `dir`ectory the sandbox goes under (default: $TMPDIR or /tmp)")
	f.BoolVar(&o.noConsole, "no-console", false, "build the sandbox, print how to reach it and keep it, without opening the console")
	f.StringVar(&o.remove, "remove", "", "stop and delete the sandbox in `dir` (one drill made)")
	f.BoolVar(&o.auto, "auto", false, "perform the recovery headlessly in the sandbox (restore --yes of the right backup) and print the scored report; exit 0 only when the data is right and the RTO met: the monthly restore test")
	f.StringVar(&o.backup, "backup", "", "with --auto: restore this backup instead of the right one, or newest (to see a mistake scored)")
	f.BoolVar(&o.pitr, "pitr", false, "with --auto: recover to a point in time just before the fault (restore --to-time, from the sandbox's base backup and WAL archive) instead of restoring the clean backup")
	f.BoolVar(&o.tabletop, "tabletop", false, "a tabletop exercise: no sandbox and no server, every step talked through and recorded, nothing run; journals in --dir (default: drills/tabletop in the state directory, $XDG_STATE_HOME/drconsole or ~/.local/state/drconsole)")
	f.StringVar(&o.injects, "injects", "", "the facilitator's inject `file` (YAML), or example for the scenario's shipped one: each inject is shown when due and journaled, and in a sandbox applied for real")
	return c
}

// productionEnv are the settings a drill must never read: connection settings,
// locations, keys, AWS credentials.
func productionEnv(k string) bool {
	for _, p := range []string{"PG", "DB_", "AWS_", "S3_"} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	switch k {
	case "DATABASE_URL", "BACKUP_DIR", "BACKUP_PREFIX", "DRCONSOLE_CONFIG", "DRCONSOLE_PASSPHRASE", "DRCONSOLE_SIGNER_KEY", "DRCONSOLE_SIGN_KEY", "XDG_STATE_HOME":
		return true
	}
	return false
}

func runDrill(ctx context.Context, a *app, o *drillOptions) error {
	if o.remove != "" {
		return removeSandbox(o.remove)
	}
	if a.backupDir != "" || a.stateDir != "" {
		return usagef("a drill uses its sandbox's settings only: --backup-dir and --state-dir do not apply")
	}
	if o.tabletop {
		return runTabletop(ctx, a, o)
	}
	// The command line is checked whole before anything is said or built.
	if err := drill.CheckScenario(o.scenario); err != nil {
		return usageError{err}
	}
	if _, ok := drill.Sizes[o.size]; !ok {
		return usagef("--size %q: small, medium or large", o.size)
	}
	// The facilitator's injects: shown when due, and applied for real to the sandbox.
	var injects []inject.Inject
	if o.injects != "" {
		if o.auto || o.noConsole {
			return usagef("--injects are for a team at the console: --auto and --no-console do not apply")
		}
		var err error
		if _, injects, err = loadInjects(checklists.Default(), o.scenario, o.injects); err != nil {
			return err
		}
	}
	// The one thing a drill takes from this machine's configuration: its notify channels
	// marked drills: true, and the secrets they name.
	extra, pass, reachable, err := drillChannels(a)
	if err != nil {
		return err
	}
	// The one thing a drill writes outside its sandbox: its scorecard, for report --drills.
	records := drill.RecordDir(checklists.StateDir("", a.getenv))
	// Whatever this process would otherwise reach, it must not: the libraries read some
	// of these from the process's environment themselves.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); productionEnv(k) {
			os.Unsetenv(k)
		}
	}
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
	fmt.Fprintf(a.stderr, "drill: building a %s sandbox for %s (seed %d)\n", o.size, o.scenario, seed)
	sb, err := drill.Build(ctx, drill.Options{Scenario: o.scenario, Size: o.size, Seed: seed, Parent: o.dir, ConfigExtra: extra,
		Log: func(s string) { fmt.Fprintln(a.stderr, "drill: "+s) }})
	if err != nil {
		return err
	}
	sb.PassEnv = pass
	// A recovery to a point in time in the sandbox runs this drconsole as the server's
	// restore_command: the server's account must be able to.
	self := a.self
	if tool, err := sb.ServerTool(a.self); err != nil {
		fmt.Fprintf(a.stderr, "drill: a recovery to a point in time will not work in this sandbox: %v\n", err)
	} else {
		self = tool
	}
	keep := o.keep || o.noConsole
	if keep {
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
	if o.auto {
		return autoDrill(ctx, a, sb, o, seed, records, self)
	}
	printSandbox(a, sb, seed, o.noConsole)
	if o.noConsole {
		fmt.Fprintf(a.stdout, "remove it with: drconsole drill --remove %s\n", sb.Dir)
		return nil
	}
	env := sb.Env()
	in := &app{stdin: a.stdin, stdout: a.stdout, stderr: a.stderr, getenv: func(k string) string { return env[k] },
		configPath: sb.Config, self: self} // journals under the sandbox's XDG_STATE_HOME
	sc := &drillScorer{records: records, score: func() (*scored, error) {
		// Scored even when the terminal hung up (which cancels ctx): the scorecard is all
		// that is left of a drill once its sandbox is gone.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		return scoreDrill(sctx, in, sb, drill.ModeConsole, o, seed, reachable)
	}}
	if len(injects) > 0 {
		fmt.Fprintf(a.stderr, "drill: %d injects from %s, shown when due and applied for real to the sandbox\n", len(injects), o.injects)
	}
	var alert time.Time
	if !sb.FaultAt.IsZero() {
		alert = sb.PITRTarget()
	}
	err = runConsole(ctx, in, &consoleOptions{drill: true, sandbox: true, score: sc.atClose, alert: alert, scenario: o.scenario, key: keyFlags{gpgKey: sb.Secret},
		injects: injects, injectScenario: o.scenario, applyInject: sb.ApplyInject})
	fmt.Fprintf(a.stdout, "drill over (seed %d): %s\n", seed, sb.Fault)
	fmt.Fprintf(a.stdout, "answer    %s\n", sb.Answer())
	if keep {
		fmt.Fprintf(a.stdout, "the sandbox is kept in %s; remove it with: drconsole drill --remove %s\n", sb.Dir, sb.Dir)
	}
	err = sc.atExit(a, err)
	// A hang-up leaves nothing to resume: the sandbox, its server and its journal go now.
	var h hungUp
	if errors.As(err, &h) {
		then := "the drill ended and its sandbox is removed with it: there is nothing to resume"
		if keep {
			then = "the drill ended; its sandbox is kept in " + sb.Dir + " (drconsole drill --remove " + sb.Dir + " deletes it)"
		}
		if sc.kept != "" {
			then += "; its scorecard is kept at " + sc.kept
		} else {
			then += "; no scorecard could be kept"
		}
		err = hungUp{then: then}
	}
	return err
}

// drillScorer scores a drill at the console: when it is closed (the console shows the
// scorecard), and again once the console is gone if it was not; the scorecard is kept.
type drillScorer struct {
	score   func() (*scored, error)
	records string
	card    *scored
	kept    string // the scorecard's path, once kept
}

func (d *drillScorer) atClose() (ui.Scored, error) {
	c, err := d.score()
	if err != nil {
		return ui.Scored{}, err
	}
	d.card = c
	out := ui.Scored{Text: c.Text()}
	if path, err := c.Save(d.records, c.report); err == nil {
		d.kept = path
		out.Text += "kept      " + path + "\n"
		out.Report = drill.ReportPath(path)
	} else {
		out.Text += "kept      nothing: the scorecard could not be kept for report --drills: " + err.Error() + "\n"
	}
	return out, nil
}

// atExit prints the scorecard; the drill's exit is the console's (err): a trainee's drill
// that scored a failure has still run as it should (only --auto's exit is its score).
func (d *drillScorer) atExit(a *app, err error) error {
	if d.card == nil || !d.card.Closed() {
		c, serr := d.score()
		if serr != nil {
			fmt.Fprintf(a.stderr, "drill: it could not be scored: %v\n", serr)
			return err
		}
		d.card = c
	}
	d.kept, _ = d.card.print(a, d.records)
	return err
}

// autoDrill recovers the sandbox as an operator would, with the same restore as the
// command line's (a real incident of the sandbox: nothing outside it exists for it), and
// scores the result with the same scorer as the console's drills.
func autoDrill(ctx context.Context, a *app, sb *drill.Sandbox, o *drillOptions, seed uint64, records, self string) error {
	env := sb.Env()
	var out strings.Builder
	in := &app{stdin: strings.NewReader(""), stdout: &out, stderr: a.stderr, getenv: func(k string) string { return env[k] },
		configPath: sb.Config, self: self} // journals under the sandbox's XDG_STATE_HOME
	backup := sb.Clean
	switch o.backup {
	case "":
	case "newest": // the newest backup of all, as a hurried operator would take it
		backup = sb.Backups[len(sb.Backups)-1]
	default:
		backup = o.backup
	}
	if _, _, err := drillScenario(in, o.scenario); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "sandbox   automatic recovery in %s\n", sb.Dir)
	args := []string{"restore", "--yes", "--gpg-key", sb.Secret, "--scenario", o.scenario, "--new-incident", "--json", backup}
	if o.pitr {
		if o.backup != "" {
			return usagef("--pitr recovers to a point in time: --backup does not apply")
		}
		backup = "a point in time just before the fault"
		args = []string{"restore", "--yes", "--gpg-key", sb.Secret, "--scenario", o.scenario, "--new-incident",
			"--to-time", sb.PITRTarget().Format("2006-01-02 15:04:05Z07:00"), "--work-dir", sb.Dir}
	}
	if code := in.main(args); code != 0 {
		fmt.Fprintf(a.stderr, "drill: the restore of %s failed (exit %d)\n", backup, code)
	}
	card, err := scoreDrill(ctx, in, sb, drill.ModeAuto, o, seed, nil)
	if err != nil {
		return err
	}
	_, err = card.print(a, records)
	return err
}

// drillScenario is the sandbox runbook's scenario id.
func drillScenario(in *app, id string) (*checklists.Runbook, *checklists.Scenario, error) {
	rb, _, err := loadRunbook(in)
	if err != nil {
		return nil, nil, err
	}
	sc, ok := rb.Scenario(id)
	if !ok {
		return nil, nil, usagef("the runbook has no scenario %q", id)
	}
	return rb, sc, nil
}

// scored is a drill's scorecard and its incident's report.
type scored struct {
	*drill.Scorecard
	report string
}

// scoreDrill scores the sandbox's latest incident against what the sandbox knows.
func scoreDrill(ctx context.Context, in *app, sb *drill.Sandbox, mode string, o *drillOptions, seed uint64, reachable []string) (*scored, error) {
	rb, sc, err := drillScenario(in, o.scenario)
	if err != nil {
		return nil, err
	}
	inc, err := drill.LatestIncident(checklists.StateDir("", in.getenv))
	if err != nil {
		return nil, fmt.Errorf("read the drill's journal: %w", err)
	}
	prints, perr := sb.Fingerprints(ctx)
	now := time.Now()
	out := &scored{Scorecard: drill.Score(drill.ScoreInput{Mode: mode, Size: o.size, Seed: seed, Incident: inc, Runbook: rb, Scenario: sc,
		Sandbox: sb, Prints: prints, PrintsErr: perr, Reachable: reachable, Now: now})}
	if inc != nil {
		out.report = checklists.BuildReport(inc, nil, now).Markdown()
	}
	return out, nil
}

// print prints the scorecard, keeps it for report --drills and returns where ("" if it
// could not be), and the drill's exit: an error when it failed.
func (card *scored) print(a *app, records string) (string, error) {
	fmt.Fprint(a.stdout, card.Text())
	kept := ""
	if records != "" {
		if path, err := card.Save(records, card.report); err != nil {
			fmt.Fprintf(a.stderr, "drill: the scorecard could not be kept for report --drills: %v\n", err)
		} else {
			kept = path
			fmt.Fprintf(a.stdout, "kept      %s (drconsole report --drills shows the trend)\n", path)
		}
	}
	if !card.Pass {
		return kept, fmt.Errorf("the drill failed: %s", card.Why())
	}
	return kept, nil
}

func printSandbox(a *app, sb *drill.Sandbox, seed uint64, withAnswer bool) {
	w := a.stdout
	fmt.Fprintf(w, "sandbox   %s (seed %d)\n", sb.Dir, seed)
	fmt.Fprintf(w, "server    socket %s, port %d, database %s (psql -h %s -p %d -U postgres %s)\n", sb.Dir, sb.Port, sb.Database, sb.Dir, sb.Port, sb.Database)
	fmt.Fprintf(w, "backups   %d in primary and secondary (%s … %s), encrypted and signed with the drill key %s; a base backup and the WAL archive to past the fault\n", len(sb.Backups), sb.Backups[0], sb.Backups[len(sb.Backups)-1], sb.Secret)
	if !sb.FaultAt.IsZero() {
		fmt.Fprintf(w, "alert     the first sign of trouble was seen at %s UTC\n", sb.PITRTarget().Format("2006-01-02 15:04:05"))
	}
	if withAnswer {
		fmt.Fprintf(w, "fault     %s\n", sb.Fault)
		fmt.Fprintf(w, "answer    %s\n", sb.Answer())
	}
}

// removeSandbox stops and deletes a sandbox a drill made, and nothing else.
func removeSandbox(dir string) error {
	dir = filepath.Clean(dir)
	if !strings.HasPrefix(filepath.Base(dir), "drconsole-drill-") {
		return usagef("%s is not a drill sandbox (their directories are named drconsole-drill-…)", dir)
	}
	for _, f := range []string{"drconsole.yaml", "drill-secret.asc", "data/PG_VERSION"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return usagef("%s is not a drill sandbox (no %s)", dir, f)
		}
	}
	return drill.RemoveDir(dir)
}

// drillChannels are the configuration's notify channels marked drills: true, as a
// notify: section for the sandbox's configuration, and the variables their secrets come
// from, and the escalation roles they reach. Nothing else of the configuration goes into
// a drill.
func drillChannels(a *app) (string, map[string]string, []string, error) {
	cfg, err := storage.LoadConfig(a.configPath, a.getenv)
	if err != nil {
		return "", nil, nil, usageError{err}
	}
	if cfg.Notify.Kind != yaml.SequenceNode {
		return "", nil, nil, nil
	}
	keep := &yaml.Node{Kind: yaml.SequenceNode}
	pass := map[string]string{}
	var roles []string
	for _, ch := range cfg.Notify.Content {
		if ch.Kind != yaml.MappingNode {
			continue
		}
		drills := false
		var envs, reach []string
		for i := 0; i+1 < len(ch.Content); i += 2 {
			k, v := ch.Content[i].Value, ch.Content[i+1]
			if k == "drills" && v.Value == "true" {
				drills = true
			}
			if k == "escalation" {
				reach = append(reach, v.Value) // a scalar, or a list:
				for _, r := range v.Content {
					reach = append(reach, r.Value)
				}
			}
			if strings.HasSuffix(k, "_env") && v.Kind == yaml.ScalarNode {
				envs = append(envs, v.Value)
			}
		}
		if !drills {
			continue
		}
		keep.Content = append(keep.Content, ch)
		roles = append(roles, reach...)
		for _, e := range envs {
			if v := a.getenv(e); v != "" {
				pass[e] = v
			}
		}
	}
	if len(keep.Content) == 0 {
		return "", nil, nil, nil
	}
	out, err := yaml.Marshal(&yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: "notify"}, keep}})
	if err != nil {
		return "", nil, nil, err
	}
	return string(out), pass, roles, nil
}
