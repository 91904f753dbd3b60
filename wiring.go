package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"drconsole/recovery"
	"drconsole/storage"
)

// The pieces several subcommands share: connection settings, keys, locations and the
// resolution of a BACKUP argument.

type connFlags struct{ dbURL string }

func (c *connFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&c.dbURL, "db-url", "", "PostgreSQL `URL` of the target (default: DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME, then DATABASE_URL, then PG* and ~/.pgpass)")
}

func (c *connFlags) resolve(a *app) (*recovery.Conn, error) {
	conn, err := recovery.ResolveConn(c.dbURL, a.getenv)
	if err != nil {
		return nil, usageError{err}
	}
	return conn, nil
}

type keyFlags struct {
	gpgKey         string
	passphraseFile string
	signerKey      string
}

func (k *keyFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&k.gpgKey, "gpg-key", "", "exported OpenPGP secret key `file` (armored or binary) to decrypt backups")
	fs.StringVar(&k.passphraseFile, "passphrase-file", "", "`file` holding the passphrase for the key or a symmetric backup (default: $DRCONSOLE_PASSPHRASE, else a prompt)")
	fs.StringVar(&k.signerKey, "signer-key", "", "public key `file` of the backup job's signing keys: backups none of them signed are refused (default: $DRCONSOLE_SIGNER_KEY, else signer_key in the config file)")
}

// keys loads the secret key and passphrase. A passphrase that is needed but not given
// is asked for once, without echo, when standard input is a terminal.
func (k *keyFlags) keys(a *app) (*recovery.Keys, error) {
	keys := &recovery.Keys{}
	if k.gpgKey != "" {
		ents, err := recovery.ReadKeyFile(k.gpgKey)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", recovery.ErrNoKey, err)
		}
		keys.Entities = ents
	}
	if signer := a.signerKeyPath(k.signerKey); signer != "" {
		ents, err := recovery.ReadSignerFile(signer)
		if err != nil {
			return nil, usageError{err}
		}
		keys.Signers = ents
	}
	pass, err := a.passphrase(k.passphraseFile)
	if err != nil {
		return nil, err
	}
	switch {
	case pass != nil:
		keys.Passphrase = pass
	default:
		if f, ok := a.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			keys.Ask = func(prompt string) ([]byte, error) {
				fmt.Fprintf(a.stderr, "Enter %s: ", prompt)
				p, err := term.ReadPassword(int(f.Fd()))
				fmt.Fprintln(a.stderr)
				return p, err
			}
		}
	}
	return keys, nil
}

// passphrase is the passphrase given without a prompt: --passphrase-file, else
// $DRCONSOLE_PASSPHRASE; nil when neither gives one.
func (a *app) passphrase(file string) ([]byte, error) {
	switch {
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%w: read passphrase file: %v", recovery.ErrNoKey, err)
		}
		return []byte(strings.TrimRight(string(data), "\r\n")), nil
	case a.getenv("DRCONSOLE_PASSPHRASE") != "":
		return []byte(a.getenv("DRCONSOLE_PASSPHRASE")), nil
	}
	return nil, nil
}

// locations opens every configured location (config file, else the environment);
// --backup-dir replaces $BACKUP_DIR, and is added to a config file's locations when none
// of them is that directory.
func (a *app) locations(ctx context.Context) ([]storage.Location, error) {
	getenv := a.getenv
	if a.backupDir != "" {
		getenv = func(k string) string {
			if k == "BACKUP_DIR" {
				return a.backupDir
			}
			return a.getenv(k)
		}
	}
	cfg, err := storage.LoadConfig(a.configPath, getenv)
	if err != nil {
		return nil, usageError{err}
	}
	locs, err := storage.Locations(ctx, cfg, a.sdkLog())
	if err != nil {
		return nil, usageError{err}
	}
	if a.backupDir != "" && !hasDir(locs, a.backupDir) {
		locs = append(locs, storage.NewDir("backup-dir", a.backupDir))
	}
	return locs, nil
}

func hasDir(locs []storage.Location, dir string) bool {
	for _, l := range locs {
		if d, ok := l.(*storage.Dir); ok && d.String() == dir {
			return true
		}
	}
	return false
}

// sdkLog sends the AWS SDK's log lines to stderr under --debug. Each location's client
// logs from its own goroutines; a.stderr is a lockedWriter (see app.main), so lines from
// them and from the progress printer never interleave or race.
func (a *app) sdkLog() storage.Option {
	return storage.WithLog(a.stderr, a.debug)
}

// lockedWriter serialises writes from several goroutines to one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// backupPrefixes are the prefixes of the application's backup names: $BACKUP_PREFIX, else
// backup_prefix in the config file, else the target database's name, else the shipped
// runbook's application.
func (a *app) backupPrefixes(database string) []string {
	if p := a.getenv("BACKUP_PREFIX"); p != "" {
		return []string{p}
	}
	if cfg, err := storage.LoadConfig(a.configPath, a.getenv); err == nil && cfg.BackupPrefix != "" {
		return []string{cfg.BackupPrefix}
	}
	if database != "" {
		return []string{database}
	}
	return []string{storage.DefaultPrefix}
}

// resolveBackup turns a BACKUP argument into a source: "latest" (the newest full
// backup of the application, prefixes, across reachable locations), an s3:// URL, a path to a file, or a backup name
// looked up in each location in order. Locations skipped on the way are reported on
// stderr, never silently.
func (a *app) resolveBackup(ctx context.Context, arg string, prefixes []string) (recovery.Source, []storage.Skip, error) {
	switch {
	case arg == "latest":
		locs, err := a.locations(ctx)
		if err != nil {
			return recovery.Source{}, nil, err
		}
		cat := storage.ListAll(ctx, locs)
		var skipped []storage.Skip
		for _, st := range cat.Locations {
			if !st.Reachable {
				skipped = append(skipped, storage.Skip{Location: st.Name, Reason: st.Err})
			}
		}
		b, err := storage.Latest(cat, prefixes...)
		if err != nil {
			return recovery.Source{}, skipped, err
		}
		for _, l := range locs {
			if l.Name() == b.Location {
				return recovery.Source{Location: l, Backup: b}, skipped, nil
			}
		}
		return recovery.Source{}, skipped, fmt.Errorf("%w: location %q of the latest backup", storage.ErrNotFound, b.Location)
	case storage.IsS3URL(arg):
		locs, err := a.locations(ctx)
		if err != nil {
			return recovery.Source{}, nil, err
		}
		loc, b, err := storage.ResolveS3URL(ctx, arg, locs, a.sdkLog())
		return recovery.Source{Location: loc, Backup: b}, nil, err
	case strings.ContainsRune(arg, filepath.Separator) || fileExists(arg):
		abs, err := filepath.Abs(arg)
		if err != nil {
			return recovery.Source{}, nil, err
		}
		loc := storage.NewDir("file", filepath.Dir(abs))
		b, err := loc.Stat(ctx, filepath.Base(abs))
		return recovery.Source{Location: loc, Backup: b}, nil, err
	}
	locs, err := a.locations(ctx)
	if err != nil {
		return recovery.Source{}, nil, err
	}
	f, err := storage.FindWithFailover(ctx, locs, arg)
	if err != nil {
		return recovery.Source{}, nil, err
	}
	return recovery.Source{Location: f.Location, Backup: f.Backup}, f.Skipped, nil
}

// oneBackup resolves the BACKUP argument of restore and verify, telling the operator on
// stderr which locations were skipped on the way and why.
func (a *app) oneBackup(ctx context.Context, arg string, prefixes []string) (recovery.Source, []storage.Skip, error) {
	src, skipped, err := a.resolveBackup(ctx, arg, prefixes)
	if err != nil {
		return src, skipped, err
	}
	a.reportSkipped(skipped, src.Location.Name())
	return src, skipped, nil
}

func (a *app) reportSkipped(skipped []storage.Skip, served string) {
	for _, s := range skipped {
		fmt.Fprintf(a.stderr, "drconsole: location %s skipped: %s; using %s\n", s.Location, s.Reason, served)
	}
}

func fileExists(p string) bool {
	info, err := os.Stat(p)
	return err == nil && info.Mode().IsRegular()
}

func (a *app) isTerminal(w io.Writer) bool {
	if l, ok := w.(*lockedWriter); ok {
		w = l.w
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && a.getenv("TERM") != "dumb"
}

// confirm asks the operator to type want; it returns false on anything else, on end of
// input, or when ctx ends.
func (a *app) confirm(ctx context.Context, prompt, want string) bool {
	fmt.Fprint(a.stderr, prompt)
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(a.stdin).ReadString('\n')
		if f, ok := a.stdin.(*os.File); !ok || !term.IsTerminal(int(f.Fd())) {
			fmt.Fprintln(a.stderr) // nothing was echoed: finish the prompt's line
		}
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		return s == want
	case <-ctx.Done():
		fmt.Fprintln(a.stderr)
		return false
	}
}

// oneBackupArg is the argument check of restore and verify.
func oneBackupArg(c *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usagef("%s needs exactly one BACKUP (a path, a name, an s3:// URL or latest)", displayName(c))
	}
	return nil
}

// loadFlags are how a restore loads a backup: restore, verify --restore-test and the
// console take the same flags, meaning the same.
type loadFlags struct {
	noOwner       bool
	allowUnsigned bool
	trustBackup   bool
	engine        engineFlag
	jobs          jobsFlag
}

func (l *loadFlags) add(fs *pflag.FlagSet) {
	fs.BoolVar(&l.noOwner, "no-owner", false, "do not restore object ownership (when the archive's roles do not exist on the target)")
	fs.BoolVar(&l.allowUnsigned, "allow-unsigned", false, "restore a backup that none of the --signer-key keys signed (it is still flagged)")
	fs.BoolVar(&l.trustBackup, "trust-backup", false, "load the backup as the connecting role, not as a role without privileges: only for a backup you trust that needs more (C functions, event triggers), or a server that refuses password logins")
	l.engine = recovery.EngineAuto
	fs.Var(&l.engine, "engine", "what loads a custom-format backup: pg_restore, parallel (its rows over several connections), or auto (parallel for a backup of 64 MiB or more on 4 CPUs or more)")
	fs.Var(&l.jobs, "jobs", "connections of the parallel engine, 1 to 64 (default: as many as the CPUs, 2 to 8)")
}

// engineFlag is --engine: one of the three names, refused as a usage error otherwise.
type engineFlag string

func (e *engineFlag) String() string { return string(*e) }
func (e *engineFlag) Type() string   { return "auto|pg_restore|parallel" }
func (e *engineFlag) Set(s string) error {
	switch s {
	case recovery.EngineAuto, recovery.EnginePgRestore, recovery.EngineParallel:
		*e = engineFlag(s)
		return nil
	}
	return fmt.Errorf("%q is not an engine: auto, pg_restore or parallel", s)
}

// jobsFlag is --jobs: 1 to 64 connections (0, the default, lets the engine choose).
type jobsFlag int

func (j *jobsFlag) String() string {
	if *j == 0 {
		return ""
	}
	return strconv.Itoa(int(*j))
}
func (j *jobsFlag) Type() string { return "N" }
func (j *jobsFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 64 {
		return fmt.Errorf("%q connections: give a number from 1 to 64", s)
	}
	*j = jobsFlag(n)
	return nil
}

// options sets them on a restore's options.
func (l *loadFlags) options(o recovery.Options) recovery.Options {
	o.NoOwner, o.AllowUnsigned, o.TrustBackup = l.noOwner, l.allowUnsigned, l.trustBackup
	o.Engine, o.Jobs = string(l.engine), int(l.jobs)
	return o
}
