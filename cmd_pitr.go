package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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
	s = strings.TrimSpace(s)
	for _, layout := range []string{"2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05Z0700", "2006-01-02 15:04:05 Z07:00", "2006-01-02 15:04:05 MST",
		"2006-01-02T15:04:05Z07:00", "2006-01-02 15:04:05.999999Z07:00", "2006-01-02 15:04:05.999999Z07", "2006-01-02 15:04:05Z07"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04:05.999999", "2006-01-02T15:04:05", "2006-01-02 15:04"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--to-time %q: give 'YYYY-MM-DD HH:MM:SS' (UTC), with an offset such as +02:00 for another zone", s)
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
	locs, err := a.locations(ctx)
	if err != nil {
		return err
	}
	opts := wal.PITROptions{Keys: keys, Target: target, Latest: p.toLatest, LSN: strings.ToUpper(strings.TrimSpace(p.toLSN)), PgData: p.pgdata, Port: p.port,
		Log: func(s string) { fmt.Fprintln(a.stderr, "restore: "+s) }}
	for _, l := range locs {
		opts.Bases = append(opts.Bases, storage.BasesOf(l))
		opts.WAL = append(opts.WAL, storage.WALOf(l))
	}
	opts.RestoreCommand = a.restoreCommand(o)
	if p.pgdata == "" {
		return a.recoverDatabase(ctx, c, o, opts)
	}
	plan, err := wal.PlanPITR(ctx, opts)
	if err != nil {
		return err
	}
	printPITRPlan(a.stdout, plan, p.pgdata)
	res, err := plan.Restore(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "recovered: %s; promoted to timeline %d\n", res.Stopped, res.NewTimeline)
	fmt.Fprintf(a.stdout, "the server runs on %s (log %s); archive_mode is off there: turn it on, with a new archive, once it is production\n", res.PgData, res.Log)
	return nil
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
// the dump are removed however it ends.
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
	// A temporary cluster a killed run left (still running, and the size of the
	// cluster on disk) goes first.
	if removed, err := wal.RemoveOrphans(o.pitr.workDir, "drconsole-pitr-*", "pgdata"); err != nil {
		fmt.Fprintf(a.stderr, "restore: a temporary cluster left by a run that died could not be removed: %v\n", err)
	} else {
		for _, d := range removed {
			fmt.Fprintf(a.stderr, "restore: removed %s, the temporary cluster of a run that died\n", d)
		}
	}
	work, err := os.MkdirTemp(o.pitr.workDir, "drconsole-pitr-")
	if err != nil {
		return fmt.Errorf("%w: %v", recovery.ErrPreflight, err)
	}
	defer os.RemoveAll(work)
	if err := wal.MarkOwner(work); err != nil {
		return err
	}
	printPITRPlan(a.stderr, plan, "a temporary cluster in "+work+", then "+cn.Database+" through a restore")
	port, err := wal.FreePort()
	if err != nil {
		return err
	}
	plan.SetPgData(filepath.Join(work, "pgdata"), port, true)
	res, err := plan.Restore(ctx)
	if res != nil {
		defer res.Stop()
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "restore: recovered: %s; promoted to timeline %d\n", res.Stopped, res.NewTimeline)
	// The dump's name dates it, and the report's RPO follows: the last transaction the
	// recovery replayed, else the target.
	at := res.RecoveryPoint(ctx, cn.User)
	if at.IsZero() {
		at = plan.Target()
	}
	if at.IsZero() {
		at = time.Now()
	}
	dump := filepath.Join(work, fmt.Sprintf("%s_full_%s.dump", cn.Database, at.UTC().Format("20060102_150405")))
	fmt.Fprintf(a.stderr, "restore: dumping %s from the recovered cluster\n", cn.Database)
	if err := res.Dump(ctx, cn.Database, cn.User, dump); err != nil {
		return err
	}
	res.Stop()
	return runRestore(ctx, a, c, o, dump)
}

// restoreCommand is restore_command for a recovered server: this drconsole's wal-fetch
// with the same locations and decryption key. The server runs it in its own environment
// and its data directory: paths are made absolute, and the settings that name locations
// (never secrets: AWS credentials come from the server account's own chain) are given.
func (a *app) restoreCommand(o *restoreOptions) string {
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
	if o.key.gpgKey != "" {
		cmd += " --gpg-key " + shellQuote(abs(o.key.gpgKey))
	}
	if o.key.passphraseFile != "" {
		cmd += " --passphrase-file " + shellQuote(abs(o.key.passphraseFile))
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
