package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"drconsole/checklists"
	"drconsole/drill"
	"drconsole/storage"
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
	f.BoolVar(&o.tabletop, "tabletop", false, "a tabletop exercise: no sandbox and no server, every step talked through and recorded, nothing run; journals in --dir (default ~/.local/state/drconsole/drills/tabletop)")
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
	if o.tabletop || o.injects != "" {
		return runInjectDrill(ctx, a, o)
	}
	if _, ok := drill.Sizes[o.size]; !ok {
		return usagef("--size %q: small, medium or large", o.size)
	}
	if a.backupDir != "" || a.stateDir != "" {
		return usagef("a drill uses its sandbox's settings only: --backup-dir and --state-dir do not apply")
	}
	// The one thing a drill takes from this machine's configuration: its notify channels
	// marked drills: true, and the secrets they name.
	extra, pass, err := drillChannels(a)
	if err != nil {
		return err
	}
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
		return usageOrErr(err)
	}
	sb.PassEnv = pass
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
		return autoDrill(ctx, a, sb, o, seed)
	}
	printSandbox(a, sb, seed, o.noConsole)
	if o.noConsole {
		fmt.Fprintf(a.stdout, "remove it with: drconsole drill --remove %s\n", sb.Dir)
		return nil
	}
	env := sb.Env()
	in := &app{stdin: a.stdin, stdout: a.stdout, stderr: a.stderr, getenv: func(k string) string { return env[k] },
		configPath: sb.Config, stateDir: sb.StateDir, self: a.self}
	err = runConsole(ctx, in, &consoleOptions{drill: true, key: keyFlags{gpgKey: sb.Secret}})
	// The answer is the facilitator's: shown once the drill is over.
	fmt.Fprintf(a.stdout, "drill over (seed %d): %s\n", seed, sb.Fault)
	fmt.Fprintf(a.stdout, "answer    %s\n", answer(sb))
	if keep {
		fmt.Fprintf(a.stdout, "the sandbox is kept in %s; remove it with: drconsole drill --remove %s\n", sb.Dir, sb.Dir)
	}
	return err
}

// autoDrill recovers the sandbox as an operator would, with the same restore as the
// command line's (a real incident of the sandbox: nothing outside it exists for it), and
// scores the result against what the sandbox knows is right.
func autoDrill(ctx context.Context, a *app, sb *drill.Sandbox, o *drillOptions, seed uint64) error {
	env := sb.Env()
	var out strings.Builder
	in := &app{stdin: strings.NewReader(""), stdout: &out, stderr: a.stderr, getenv: func(k string) string { return env[k] },
		configPath: sb.Config, stateDir: sb.StateDir, self: a.self}
	backup := sb.Clean
	switch o.backup {
	case "":
	case "newest": // the newest backup of all, as a hurried operator would take it
		backup = sb.Backups[len(sb.Backups)-1]
	default:
		backup = o.backup
	}
	rb, _, err := loadRunbook(in)
	if err != nil {
		return err
	}
	sc, ok := rb.Scenario(o.scenario)
	if !ok {
		return usagef("the runbook has no scenario %q", o.scenario)
	}
	start := time.Now()
	code := in.main([]string{"restore", "--yes", "--gpg-key", sb.Secret, "--scenario", o.scenario, "--new-incident", "--json", backup})
	took := time.Since(start)
	prints, perr := sb.Fingerprints(ctx)

	w := a.stdout
	fmt.Fprintf(w, "drill     %s (%s, seed %d): automatic recovery in %s\n", sc.Name, o.size, seed, sb.Dir)
	fmt.Fprintf(w, "fault     %s\n", sb.Fault)
	var mistakes []string
	pick := "the right one"
	switch {
	case backup == sb.Clean:
	case slices.Contains(sb.Infected, backup):
		pick = "INFECTED: taken after the attack began"
		mistakes = append(mistakes, "restored an infected backup ("+backup+"); the clean one is "+sb.Clean)
	default:
		pick = "not the newest clean one (" + sb.Clean + ")"
		mistakes = append(mistakes, "restored "+backup+", older than the clean one, losing data")
	}
	fmt.Fprintf(w, "backup    %s: %s\n", backup, pick)
	if code != 0 {
		mistakes = append(mistakes, fmt.Sprintf("the restore failed (exit %d)", code))
	}
	rtoMet := took <= sc.RTO
	fmt.Fprintf(w, "RTO       %s of %s: %s\n", took.Round(time.Second), checklists.FormatDuration(sc.RTO), metWord(rtoMet))
	if t, ok := backupTime(backup); ok {
		rpo := start.Sub(t)
		fmt.Fprintf(w, "RPO       %s of data lost (the backup is from %s), target %s: %s\n", checklists.FormatDuration(rpo.Round(time.Minute)), t.Format("2006-01-02 15:04 UTC"), checklists.FormatDuration(sc.RPO), metWord(rpo <= sc.RPO))
	}
	right := perr == nil
	fmt.Fprintln(w, "data      each table against the clean backup's:")
	for _, t := range drill.Tables {
		name := "public." + t
		got, want := prints[name], sb.Prints[name]
		verdict := "right"
		if got != want {
			verdict, right = "WRONG", false
		}
		fmt.Fprintf(w, "  %-6s  %-15s %s\n", verdict, name, strings.SplitN(got, " ", 2)[0]+" rows")
	}
	if perr != nil {
		fmt.Fprintf(w, "  the sandbox's database cannot be read: %v\n", perr)
	}
	if !right {
		mistakes = append(mistakes, "the recovered data is not the clean backup's")
	}
	for _, m := range mistakes {
		fmt.Fprintf(w, "mistake   %s\n", m)
	}
	score := "PASS: the data is right and the RTO met"
	if !right || !rtoMet || len(mistakes) > 0 {
		score = "FAIL"
	}
	fmt.Fprintf(w, "score     %s\n", score)
	if score != "PASS: the data is right and the RTO met" {
		return fmt.Errorf("the drill failed: %s", strings.Join(append(mistakes, notMet(rtoMet)...), "; "))
	}
	return nil
}

func metWord(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func notMet(rtoMet bool) []string {
	if rtoMet {
		return nil
	}
	return []string{"the RTO was missed"}
}

// backupTime is when a backup was taken, from its name.
func backupTime(name string) (time.Time, bool) {
	b := storage.ParseName(name)
	return b.Time, !b.Time.IsZero()
}

func usageOrErr(err error) error {
	if strings.HasPrefix(err.Error(), "size ") || strings.HasPrefix(err.Error(), "scenario ") {
		return usageError{err}
	}
	return err
}

func printSandbox(a *app, sb *drill.Sandbox, seed uint64, withAnswer bool) {
	w := a.stdout
	fmt.Fprintf(w, "sandbox   %s (seed %d)\n", sb.Dir, seed)
	fmt.Fprintf(w, "server    socket %s, port %d, database %s (psql -h %s -p %d -U postgres %s)\n", sb.Dir, sb.Port, sb.Database, sb.Dir, sb.Port, sb.Database)
	fmt.Fprintf(w, "backups   %d in primary and secondary (%s … %s), encrypted and signed with the drill key %s\n", len(sb.Backups), sb.Backups[0], sb.Backups[len(sb.Backups)-1], sb.Secret)
	if withAnswer {
		fmt.Fprintf(w, "fault     %s\n", sb.Fault)
		fmt.Fprintf(w, "answer    %s\n", answer(sb))
	}
}

// answer is what a correct recovery brings back, for the facilitator.
func answer(sb *drill.Sandbox) string {
	var names []string
	for t := range sb.Truth {
		names = append(names, t)
	}
	sort.Strings(names)
	var truth []string
	for _, t := range names {
		truth = append(truth, fmt.Sprintf("%s %d", t, sb.Truth[t]))
	}
	return "the clean backup's rows: " + strings.Join(truth, ", ")
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
// from. Nothing else of the configuration goes into a drill.
func drillChannels(a *app) (string, map[string]string, error) {
	cfg, err := storage.LoadConfig(a.configPath, a.getenv)
	if err != nil {
		return "", nil, usageError{err}
	}
	if cfg.Notify.Kind != yaml.SequenceNode {
		return "", nil, nil
	}
	keep := &yaml.Node{Kind: yaml.SequenceNode}
	pass := map[string]string{}
	for _, ch := range cfg.Notify.Content {
		if ch.Kind != yaml.MappingNode {
			continue
		}
		drills := false
		var envs []string
		for i := 0; i+1 < len(ch.Content); i += 2 {
			k, v := ch.Content[i].Value, ch.Content[i+1]
			if k == "drills" && v.Value == "true" {
				drills = true
			}
			if strings.HasSuffix(k, "_env") && v.Kind == yaml.ScalarNode {
				envs = append(envs, v.Value)
			}
		}
		if !drills {
			continue
		}
		keep.Content = append(keep.Content, ch)
		for _, e := range envs {
			if v := a.getenv(e); v != "" {
				pass[e] = v
			}
		}
	}
	if len(keep.Content) == 0 {
		return "", nil, nil
	}
	out, err := yaml.Marshal(&yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: "notify"}, keep}})
	if err != nil {
		return "", nil, err
	}
	return string(out), pass, nil
}
