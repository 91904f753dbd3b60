package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"drconsole/storage"
	"drconsole/wal"
)

// pitrFlags are restore's point-in-time recovery flags.
type pitrFlags struct {
	toTime   string
	toLatest bool
	pgdata   string
	port     int
}

func (p *pitrFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&p.toTime, "to-time", "", "recover to this `time` ('YYYY-MM-DD HH:MM:SS', UTC unless an offset such as +02:00 is given) from a base backup and the WAL archive: recovery stops before the first commit after it")
	fs.BoolVar(&p.toLatest, "to-latest", false, "recover from a base backup and the WAL archive to the last archived commit")
	fs.StringVar(&p.pgdata, "pgdata", "", "with --to-time or --to-latest: the new, empty data `dir`ectory to recover into and start (a fresh DR host)")
	fs.IntVar(&p.port, "port", 0, "with --pgdata: the recovered server's port (default: the backed-up server's)")
}

func (p *pitrFlags) wanted() bool { return p.toTime != "" || p.toLatest }

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

func runPITR(ctx context.Context, a *app, o *restoreOptions) error {
	p := o.pitr
	if p.toTime != "" && p.toLatest {
		return usagef("--to-time and --to-latest: give one")
	}
	if p.pgdata == "" {
		return usagef("--to-time and --to-latest recover into a new data directory: give --pgdata DIR (recovering into an existing server's database through the safe restore is not built yet)")
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
	opts := wal.PITROptions{Keys: keys, Target: target, Latest: p.toLatest, PgData: p.pgdata, Port: p.port,
		Log: func(s string) { fmt.Fprintln(a.stderr, "restore: "+s) }}
	for _, l := range locs {
		opts.Bases = append(opts.Bases, storage.BasesOf(l))
		opts.WAL = append(opts.WAL, storage.WALOf(l))
	}
	opts.RestoreCommand = a.restoreCommand(o)
	plan, err := wal.PlanPITR(ctx, opts)
	if err != nil {
		return err
	}
	b := plan.Base
	to := "the last archived commit"
	if !p.toLatest {
		to = target.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	fmt.Fprintf(a.stdout, "plan: recover to %s into %s\n", to, p.pgdata)
	fmt.Fprintf(a.stdout, "  ok  base backup %s from %s: timeline %d, consistent from %s (PostgreSQL %s)\n", b.Name, b.Location, b.Timeline, b.StopTime.Format("2006-01-02 15:04:05 UTC"), b.Version)
	fmt.Fprintf(a.stdout, "  ok  WAL: %s\n", strings.Join(plan.Path, ", then "))
	fmt.Fprintf(a.stdout, "  ok  the archive holds %d contiguous segments from %s to %s (archived %s)\n", plan.Segments, b.StartWAL, plan.Newest, plan.Reaches.Format("2006-01-02 15:04:05 UTC"))
	res, err := plan.Restore(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "recovered: %s; promoted to timeline %d\n", res.Stopped, res.NewTimeline)
	fmt.Fprintf(a.stdout, "the server runs on %s (log %s); archive_mode is off there: turn it on, with a new archive, once it is production\n", res.PgData, res.Log)
	return nil
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
