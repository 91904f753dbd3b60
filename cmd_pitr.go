package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"drconsole/checklists"
	"drconsole/incident"
	"drconsole/recovery"
	"drconsole/storage"
	"drconsole/wal"
)

// pitrFlags are restore's point-in-time recovery flags.
type pitrFlags struct {
	toTime   string
	toLSN    string
	toLatest bool
	pgdata   string
	port     int
	workDir  string
}

func (p *pitrFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&p.toTime, "to-time", "", "recover to this `time` ('YYYY-MM-DD HH:MM:SS', UTC unless an offset such as +02:00 is given) from a base backup and the WAL archive: recovery stops before the first commit after it")
	fs.StringVar(&p.toLSN, "to-lsn", "", "recover from a base backup and the WAL archive to just after this WAL `location` (e.g. 0/3000060, as pg_current_wal_lsn() gives it)")
	fs.BoolVar(&p.toLatest, "to-latest", false, "recover from a base backup and the WAL archive to the last archived commit")
	fs.StringVar(&p.pgdata, "pgdata", "", "with --to-time or --to-latest: the new, empty data `dir`ectory to recover into and start (a fresh DR host)")
	fs.IntVar(&p.port, "port", 0, "with --pgdata: the recovered server's port (default: the backed-up server's)")
	fs.StringVar(&p.workDir, "work-dir", "", "without --pgdata: the `dir`ectory for the temporary recovered cluster and its dump, which need the cluster's size (default: $TMPDIR or /tmp)")
}

func (p *pitrFlags) wanted() bool { return p.toTime != "" || p.toLSN != "" || p.toLatest }

// parseTarget reads --to-time: UTC unless it says otherwise.
func parseTarget(s string) (time.Time, error) {
	t, err := wal.ParseTarget(s)
	if err != nil {
		return t, fmt.Errorf("--to-time %w", err)
	}
	return t, nil
}

func runPITR(ctx context.Context, a *app, c *cobra.Command, o *restoreOptions) error {
	p := o.pitr
	if n := btoi(p.toTime != "") + btoi(p.toLSN != "") + btoi(p.toLatest); n > 1 {
		return usagef("--to-time, --to-lsn and --to-latest: give one")
	}
	if p.pgdata == "" && p.port != 0 {
		return usagef("--port is the port of a server recovered into --pgdata")
	}
	if p.port < 0 || p.port > 65535 {
		return usagef("--port %d is not a port", p.port)
	}
	var target time.Time
	if p.toTime != "" {
		var err error
		if target, err = parseTarget(p.toTime); err != nil {
			return usageError{err}
		}
		if target.After(time.Now()) {
			return usagef("--to-time %s is in the future", target.UTC().Format("2006-01-02 15:04:05 UTC"))
		}
	}
	keys, err := o.key.keys(a)
	if err != nil {
		return err
	}
	opts, err := a.pitrOptions(ctx, &o.key, keys)
	if err != nil {
		return err
	}
	opts.Target, opts.Latest, opts.LSN, opts.PgData, opts.Port = target, p.toLatest, strings.ToUpper(strings.TrimSpace(p.toLSN)), p.pgdata, p.port
	opts.Log = func(s string) { fmt.Fprintln(a.stderr, "restore: "+s) }
	if p.pgdata == "" {
		return a.recoverDatabase(ctx, c, o, opts)
	}
	plan, err := wal.PlanPITR(ctx, opts)
	if err != nil {
		return err
	}
	// A fresh DR host's recovery is an incident's too: its journal and report say what
	// it reached.
	j, err := a.restoreJournal(ctx, c, o, nil, keys)
	if err != nil {
		return err
	}
	if j != nil {
		defer j.Close()
	}
	run := incident.New(j, checklists.Operator(a.getenv), o.drill)
	printPITRPlan(a.stdout, plan, p.pgdata)
	res, err := run.RecoverDataDir(ctx, plan, restoreStep(j))
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "recovered: %s; promoted to timeline %d\n", res.Stopped, res.NewTimeline)
	fmt.Fprintf(a.stdout, "the server runs on %s (log %s); archive_mode is off there: turn it on, with a new archive, once it is production\n", res.PgData, res.Log)
	if err := run.Err(); err != nil {
		return fmt.Errorf("the recovery itself is done, but %w", err)
	}
	return nil
}

// pitrOptions are a point-in-time recovery's options from every configured location,
// restore_command included; the target and the destination are the caller's.
func (a *app) pitrOptions(ctx context.Context, k *keyFlags, keys *recovery.Keys) (wal.PITROptions, error) {
	locs, err := a.locations(ctx)
	if err != nil {
		return wal.PITROptions{}, err
	}
	opts := wal.PITROptions{Keys: keys, RestoreCommand: a.restoreCommand(k)}
	for _, l := range locs {
		opts.Bases = append(opts.Bases, storage.BasesOf(l))
		opts.WAL = append(opts.WAL, storage.WALOf(l))
	}
	return opts, nil
}

func printPITRPlan(w io.Writer, plan *wal.PITRPlan, into string) {
	b := plan.Base
	to := "the last archived commit"
	switch {
	case plan.LSN() != "":
		to = "WAL location " + plan.LSN()
	case !plan.Latest():
		to = plan.Target().UTC().Format("2006-01-02 15:04:05 UTC")
	}
	fmt.Fprintf(w, "plan: recover to %s into %s\n", to, into)
	fmt.Fprintf(w, "  ok  base backup %s from %s: timeline %d, consistent from %s (PostgreSQL %s)\n", b.Name, b.Location, b.Timeline, b.StopTime.Format("2006-01-02 15:04:05 UTC"), b.Version)
	fmt.Fprintf(w, "  ok  WAL: %s\n", strings.Join(plan.Path, ", then "))
	fmt.Fprintf(w, "  ok  the archive holds %d contiguous segments from %s to %s (archived %s)\n", plan.Segments, b.StartWAL, plan.Newest, plan.Reaches.Format("2006-01-02 15:04:05 UTC"))
}

// recoverDatabase is point-in-time recovery of one database of an existing server: the
// cluster is recovered into a temporary, private data directory, the database is dumped
// from it, and that dump goes through the same restore as any backup (scratch database,
// checks, the typed swap, the old database kept, the journal). The temporary cluster and
// the dump are removed however it ends; the console recovers through the same
// incident.Run.RecoverDatabase.
func (a *app) recoverDatabase(ctx context.Context, c *cobra.Command, o *restoreOptions, opts wal.PITROptions) error {
	cn, err := o.conn.resolve(a)
	if err != nil {
		return err
	}
	if cn.Database == "" {
		return usagef("name the database to recover (--db-url, DB_NAME, DATABASE_URL or PGDATABASE), or recover the whole cluster into --pgdata DIR")
	}
	if err := recovery.ValidTarget(cn.Database); err != nil {
		return usageError{err}
	}
	// The swap asks for the database's name: without a terminal, refuse now rather
	// than after the recovery.
	if !o.yes && !c.Flags().Changed("target-db") && !o.drill && !a.stdinIsTerminal() {
		return usagef("restore swaps only when the operator types the database name, and standard input is not a terminal: give --yes to swap without asking, or --target-db NAME to recover into a new database")
	}
	plan, err := wal.PlanPITR(ctx, opts)
	if err != nil {
		return err
	}
	j, err := a.restoreJournal(ctx, c, o, cn, opts.Keys)
	if err != nil {
		return err
	}
	if j != nil {
		defer j.Close()
	}
	run := incident.New(j, checklists.Operator(a.getenv), o.drill)
	printPITRPlan(a.stderr, plan, "a temporary cluster, then "+cn.Database+" through a restore")
	dump, err := run.RecoverDatabase(ctx, plan, restoreStep(j), o.pitr.workDir, cn.Database, cn.User, opts.Log)
	if err != nil {
		return err
	}
	defer dump.Remove()
	o.journal = j
	// The dump is drconsole's own, just made from the recovered cluster: it carries no
	// signature, and none is asked of it.
	o.load.allowUnsigned = true
	return runRestore(ctx, a, c, o, dump.File)
}

// restoreCommand is restore_command for a recovered server: this drconsole's wal-fetch
// with the same locations and decryption key. The server runs it in its own environment
// and its data directory: paths are made absolute, and the settings that name locations
// (never secrets: AWS credentials come from the server account's own chain) are given.
func (a *app) restoreCommand(k *keyFlags) string {
	abs := func(p string) string {
		if x, err := filepath.Abs(p); err == nil {
			return x
		}
		return p
	}
	var env []string
	for _, k := range []string{"DRCONSOLE_CONFIG", "S3_BUCKET", "S3_BUCKET_SECONDARY", "BACKUP_DIR", "AWS_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3"} {
		if v := a.getenv(k); v != "" {
			if k == "DRCONSOLE_CONFIG" || k == "BACKUP_DIR" {
				v = abs(v)
			}
			env = append(env, k+"="+shellQuote(v))
		}
	}
	exe := a.self
	if exe == "" {
		exe = "drconsole"
	}
	cmd := strings.Join(append(env, shellQuote(exe)), " ")
	if a.configPath != "" {
		cmd += " --config " + shellQuote(abs(a.configPath))
	}
	if a.backupDir != "" {
		cmd += " --backup-dir " + shellQuote(abs(a.backupDir))
	}
	cmd += " wal-fetch"
	if k.gpgKey != "" {
		cmd += " --gpg-key " + shellQuote(abs(k.gpgKey))
	}
	if k.passphraseFile != "" {
		cmd += " --passphrase-file " + shellQuote(abs(k.passphraseFile))
	}
	return cmd + " %f %p"
}

// shellQuote quotes s for /bin/sh when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:,@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
