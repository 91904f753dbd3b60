package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"drconsole/checklists"
	"drconsole/recovery"
	"drconsole/storage"
	"drconsole/wal"
)

// folders is one folder (storage.WALOf, storage.BasesOf) of every configured location,
// or of those named, in configuration order; a name no location has is a usage error.
func (a *app) folders(ctx context.Context, only []string, of func(storage.Location) storage.Folder) ([]storage.Folder, error) {
	locs, err := a.locations(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range only {
		if !slices.ContainsFunc(locs, func(l storage.Location) bool { return l.Name() == name }) {
			return nil, usagef("no location named %q is configured", name)
		}
	}
	var out []storage.Folder
	for _, l := range locs {
		if len(only) == 0 || slices.Contains(only, l.Name()) {
			out = append(out, of(l))
		}
	}
	return out, nil
}

// walLocations is the WAL archive of every configured location, or of those named.
func (a *app) walLocations(ctx context.Context, only []string) ([]storage.Folder, error) {
	return a.folders(ctx, only, storage.WALOf)
}

// walPushMemory is the heap past which a push collects garbage again: a 16 MiB segment
// takes about 30 MiB.
const walPushMemory = 256 << 20

type walPushOptions struct {
	recipient string
	locations []string
	json      bool
}

func newWALPushCmd(a *app) *cobra.Command {
	o := &walPushOptions{}
	c := &cobra.Command{
		Use:   "wal-push [flags] PATH",
		Short: "archive one WAL file into every location (archive_command)",
		Long: `Archives the WAL file at PATH (a segment, a .history, .backup or .partial file) into
the wal/ folder of every configured location: compressed with zstd, encrypted to the
--gpg-recipient key, stored atomically under its name and the SHA-256 of its content.
A file archived before with the same content is recognised and succeeds; a different file
under the same name is refused. It exits 0 only when every location holds the file, so
that PostgreSQL keeps it and tries again otherwise. For postgresql.conf:

  archive_mode = on
  archive_command = 'drconsole wal-push --gpg-recipient /etc/drconsole/ops-public.asc %p'`,
		Example: "  drconsole wal-push --gpg-recipient ops-public.asc pg_wal/000000010000000000000001",
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("wal-push needs exactly one PATH (archive_command's %%p)")
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error { return runWALPush(c.Context(), a, o, args[0]) },
	}
	f := c.Flags()
	f.StringVar(&o.recipient, "gpg-recipient", "", "OpenPGP public key `file` to encrypt to; without it WAL is archived compressed, not encrypted")
	f.StringSliceVar(&o.locations, "location", nil, "archive into these configured `location`s only (default: every one)")
	f.BoolVar(&o.json, "json", false, "print what was stored where as JSON on stdout")
	return c
}

func runWALPush(ctx context.Context, a *app, o *walPushOptions, path string) error {
	// A push is a short process that allocates its working set once (a segment's encoded
	// copy) and exits: collecting on the way costs it a tenth of its time and saves no
	// memory. The limit brings the collector back should a push ever grow that large.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(walPushMemory))
	p := &wal.Pusher{}
	if o.recipient != "" {
		var err error
		if p.Recipients, err = recovery.ReadRecipientFile(o.recipient); err != nil {
			return usageError{err}
		}
	}
	locs, err := a.walLocations(ctx, o.locations)
	if err != nil {
		return err
	}
	p.Locations = locs
	pushed, err := p.Push(ctx, path)
	if o.json {
		out := map[string]any{"file": path, "locations": pushed}
		if err != nil {
			out["error"] = oneLine(err)
		}
		writeJSON(a.stdout, out)
	}
	return err
}

type walFetchOptions struct {
	keys      keyFlags
	locations []string
	ahead     int
	spool     string
	// prefetchSize: this run is the prefetch started by the fetch of NAME, whose
	// segments are that many bytes.
	prefetchSize int64
}

func newWALFetchCmd(a *app) *cobra.Command {
	o := &walFetchOptions{}
	c := &cobra.Command{
		Use:   "wal-fetch [flags] NAME DEST",
		Short: "restore one WAL file from the archive (restore_command)",
		Long: `Writes WAL file NAME from the archive to DEST, whole (a temporary file beside it, synced,
then renamed). It reads what wal-push stored and files another tool archived under
PostgreSQL's names, raw, gzip, zstd or OpenPGP, deciding by their bytes. Every copy is
proved whole (by OpenPGP's MDC, or else the SHA-256 that wal-push put in its name), and
a segment's header must say it is that segment.

Exit 0: written. Exit 1: every location answered and none holds NAME (PostgreSQL takes this
as the end of the WAL). Any other failure (a location that cannot be asked, a damaged copy,
a wrong key, a segment missing while later ones are archived, a bad command line) exits
126, so that PostgreSQL stops recovery instead of ending it early. For the recovering
server's configuration:

  restore_command = 'drconsole wal-fetch --gpg-key /etc/drconsole/ops-secret.asc %f %p'

or, taking a segment already fetched ahead with a hard link (what drconsole configures itself):

  restore_command = 'ln -f pg_wal/drconsole-prefetch/%f %p 2>/dev/null || drconsole wal-fetch --gpg-key /etc/drconsole/ops-secret.asc %f %p'`,
		Example: "  drconsole wal-fetch --gpg-key ops-secret.asc 000000010000000000000001 pg_wal/RECOVERYXLOG",
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("wal-fetch needs NAME and DEST (restore_command's %%f and %%p)")
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error { return runWALFetch(c.Context(), a, o, args[0], args[1]) },
	}
	f := c.Flags()
	o.keys.add(f)
	f.StringSliceVar(&o.locations, "location", nil, "read from these configured `location`s only, in configuration order (default: every one, the first that holds the file serving it)")
	f.IntVar(&o.ahead, "prefetch", 8, "segments to fetch ahead of recovery, in a process of its own, into the spool (0: none)")
	f.StringVar(&o.spool, "spool", "", "`dir`ectory for segments fetched ahead (default: drconsole-prefetch beside DEST, in pg_wal)")
	f.Int64Var(&o.prefetchSize, "prefetch-size", 0, "internal: run as the prefetch after NAME, of segments this size")
	f.MarkHidden("prefetch-size")
	return c
}

func runWALFetch(ctx context.Context, a *app, o *walFetchOptions, name, dest string) error {
	if o.ahead < 0 || o.ahead > 64 {
		return usagef("--prefetch %d: give 0 to 64 segments", o.ahead)
	}
	spool := o.spool
	if spool == "" {
		spool = wal.SpoolFor(dest)
	}
	f := &wal.Fetcher{Spool: spool, Ahead: o.ahead,
		Said: func(s string) { fmt.Fprintln(a.stderr, "drconsole wal-fetch: "+s) }}
	if o.prefetchSize == 0 && o.ahead > 0 && f.TakeSpooled(name, dest) {
		// Checked when it was spooled: no key or location is needed to hand it over.
		a.keepPrefetching(o, name, dest, spool, 0)
		return nil
	}
	keys, err := o.keys.keys(a)
	if err != nil {
		return err
	}
	locs, err := a.walLocations(ctx, o.locations)
	if err != nil {
		return err
	}
	f.Locations, f.Keys = locs, keys
	if o.prefetchSize > 0 {
		// Its downloads' buffers are garbage as soon as a segment is spooled: collect
		// them rather than let the heap grow to twice what is live.
		debug.SetMemoryLimit(prefetchMemory)
		return f.Prefetch(ctx, name, o.prefetchSize)
	}
	// The prefetch starts as soon as the segment's first page says how big segments
	// are, while the rest is fetched: recovery asks for the next one as soon as it has
	// replayed this one.
	started := o.ahead == 0
	f.Header = func(segSize int64) {
		if !started {
			started = true
			a.keepPrefetching(o, name, dest, spool, segSize)
		}
	}
	if _, err := f.Fetch(ctx, name, dest); err != nil {
		return err
	}
	if !started {
		a.keepPrefetching(o, name, dest, spool, 0)
	}
	return nil
}

// keepPrefetching starts a prefetch after the segment being restored to dest, of segSize
// bytes (0: dest's size), unless one is running: it follows recovery for as long as
// recovery asks for segments.
func (a *app) keepPrefetching(o *walFetchOptions, name, dest, spool string, segSize int64) {
	if kind, _ := wal.Kind(name); kind != wal.KindSegment || wal.Prefetching(spool) {
		return
	}
	if segSize == 0 {
		st, err := os.Stat(dest)
		if err != nil {
			return
		}
		segSize = st.Size()
	}
	if (&wal.Fetcher{Spool: spool}).MakeSpool() == nil {
		a.startPrefetch(o, name, dest, spool, segSize)
	}
}

// startPrefetch starts the prefetch of the segments after name in a process of its own,
// which outlives this one: restore_command must return as soon as its segment is there.
// It gets the same configuration, keys and locations; if it cannot start, recovery only
// goes slower.
func (a *app) startPrefetch(o *walFetchOptions, name, dest, spool string, segSize int64) {
	if a.self == "" {
		return
	}
	args := []string{"wal-fetch", "--prefetch-size", strconv.FormatInt(segSize, 10), "--prefetch", strconv.Itoa(o.ahead), "--spool", spool}
	for flag, v := range map[string]string{"--config": a.configPath, "--backup-dir": a.backupDir, "--gpg-key": o.keys.gpgKey,
		"--passphrase-file": o.keys.passphraseFile, "--signer-key": o.keys.signerKey} {
		if v != "" {
			args = append(args, flag, v)
		}
	}
	for _, l := range o.locations {
		args = append(args, "--location", l)
	}
	cmd := exec.Command(a.self, append(args, name, dest)...)
	cmd.Env = os.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cmd.Start() == nil {
		cmd.Process.Release()
	}
}

// prefetchMemory is the soft limit of the prefetch's heap.
const prefetchMemory = 96 << 20

// Exit codes of wal-fetch, as restore_command: PostgreSQL ends recovery on 1 and stops on
// anything above 125.
const (
	exitWALNotFound = 1
	exitWALStop     = 126
)

// walFetchExit is wal-fetch's exit code for err: only "not in the archive" may end
// recovery; a mistyped flag must not.
func walFetchExit(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, wal.ErrNotFound):
		return exitWALNotFound
	}
	return exitWALStop
}

// isWALFetch: the command that ran is wal-fetch.
func isWALFetch(c *cobra.Command) bool {
	return c != nil && strings.HasPrefix(displayName(c), "wal-fetch")
}

type walStatusOptions struct {
	conn      connFlags
	rpo       time.Duration
	recipient string
	locations []string
	json      bool
}

func newWALStatusCmd(a *app) *cobra.Command {
	o := &walStatusOptions{}
	c := &cobra.Command{
		Use:   "wal-status [flags]",
		Short: "how WAL archiving stands against the RPO, and how to turn it on",
		Long: `Reads the server's archiver (pg_stat_archiver, archive_mode, archive_command,
archive_timeout) and the newest file of each location's WAL archive, and says whether the
RPO holds: archiving on, not failing since its last success, an archive_timeout within the
RPO, and no WAL written longer than the RPO ago still waiting. It exits 1 when the RPO does
not hold, and prints the postgresql.conf lines that make it hold.`,
		Example: "  DB_HOST=db1 drconsole wal-status --rpo 1h --gpg-recipient /etc/drconsole/ops-public.asc",
		Args:    noArgs(""),
		RunE:    func(c *cobra.Command, _ []string) error { return runWALStatus(c.Context(), a, o) },
	}
	f := c.Flags()
	o.conn.add(f)
	f.DurationVar(&o.rpo, "rpo", time.Hour, "the recovery point objective: the most writes, in time, a disaster may lose (the runbook's is 1h)")
	f.StringVar(&o.recipient, "gpg-recipient", "", "the public key `file` the printed archive_command encrypts to (default: a placeholder path)")
	f.StringSliceVar(&o.locations, "location", nil, "look at these configured `location`s only (default: every one)")
	f.BoolVar(&o.json, "json", false, "print the status as JSON on stdout")
	return c
}

func runWALStatus(ctx context.Context, a *app, o *walStatusOptions) error {
	if o.rpo <= 0 {
		return usagef("--rpo must be positive")
	}
	cn, err := o.conn.resolve(a)
	if err != nil {
		return err
	}
	locs, err := a.walLocations(ctx, o.locations)
	if err != nil {
		return err
	}
	conn, err := cn.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	st, err := wal.Check(ctx, conn, cn.Server(), locs, o.rpo)
	if err != nil {
		return fmt.Errorf("%w: %v", recovery.ErrDatabase, err)
	}
	if o.json {
		writeJSON(a.stdout, st)
	} else {
		printWALStatus(a, st, a.archiveLines(o.recipient, o.rpo))
	}
	if !st.Holds {
		return fmt.Errorf("the RPO of %s does not hold: %s", wal.DurationWord(o.rpo), strings.Join(st.Why, "; "))
	}
	return nil
}

// archiveLines are the postgresql.conf lines that archive WAL through drconsole.
func (a *app) archiveLines(recipient string, rpo time.Duration) []string {
	if recipient == "" {
		recipient = "/etc/drconsole/ops-public.asc"
	}
	exe := a.self
	if exe == "" {
		exe = "drconsole"
	}
	cfg := ""
	if a.configPath != "" {
		cfg = " --config " + a.configPath
	}
	t := wal.Timeout(rpo)
	return []string{
		"archive_mode = on                 # needs a restart",
		fmt.Sprintf("archive_command = '%s%s wal-push --gpg-recipient %s %%p'", exe, cfg, recipient),
		fmt.Sprintf("archive_timeout = %dmin             # a segment at least every %d minutes when there are writes: within the RPO of %s", t/time.Minute, t/time.Minute, wal.DurationWord(rpo)),
	}
}

func printWALStatus(a *app, st *wal.Status, lines []string) {
	w := a.stdout
	age := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return checklists.FormatDuration(st.Now.Sub(t).Truncate(time.Second)) + " ago"
	}
	fmt.Fprintf(w, "server    %s: archive_mode %s, archive_timeout %s\n", st.Server, st.ArchiveMode, wal.DurationWord(st.ArchiveTimeout))
	fmt.Fprintf(w, "command   %s\n", storage.Printable(st.ArchiveCommand))
	last := "nothing archived yet"
	if st.LastArchived != "" {
		last = fmt.Sprintf("last archived %s %s", st.LastArchived, age(st.LastArchivedAt))
	}
	fmt.Fprintf(w, "archiver  %s; %d archived, %d failed", last, st.Archived, st.Failed)
	if st.LastFailed != "" {
		fmt.Fprintf(w, " (last failure %s %s)", st.LastFailed, age(st.LastFailedAt))
	}
	fmt.Fprintln(w)
	for _, l := range st.Locations {
		switch {
		case l.Error != "":
			fmt.Fprintf(w, "archive   %s (%s): cannot be read: %s\n", l.Name, l.Where, l.Error)
		case l.Files == 0:
			fmt.Fprintf(w, "archive   %s (%s): empty\n", l.Name, l.Where)
		default:
			fmt.Fprintf(w, "archive   %s (%s): %d files, newest %s stored %s\n", l.Name, l.Where, l.Files, l.Newest, age(l.At))
		}
	}
	for _, m := range st.Warnings {
		fmt.Fprintf(w, "warning   %s\n", m)
	}
	if st.Holds {
		fmt.Fprintf(w, "RPO       %s holds\n", wal.DurationWord(st.RPO))
		return
	}
	for _, why := range st.Why {
		fmt.Fprintf(w, "RPO       %s does not hold: %s\n", wal.DurationWord(st.RPO), why)
	}
	fmt.Fprintln(w, "\nto archive WAL through drconsole within the RPO, set in postgresql.conf:")
	for _, l := range lines {
		fmt.Fprintln(w, "  "+l)
	}
	fmt.Fprintln(w, "(the server runs archive_command in its own environment: name the locations with --config FILE there, or set BACKUP_DIR, S3_BUCKET and AWS credentials in it)")
}

type baseBackupOptions struct {
	conn      connFlags
	recipient string
	locations []string
	json      bool
}

func newBaseBackupCmd(a *app) *cobra.Command {
	o := &baseBackupOptions{}
	c := &cobra.Command{
		Use:   "basebackup [flags]",
		Short: "a physical base backup for point-in-time recovery, streamed into every location",
		Long: `Streams pg_basebackup (one tar, no copy of the cluster on disk) through zstd and OpenPGP
to the --gpg-recipient key into postgres/base/ (base/ in a directory) of the first
location, copies it to the others, and stores beside it NAME.json: its start and stop LSN,
timeline, start and stop time and PostgreSQL version, so that choosing one for a point in
time needs no key. The WAL comes from the archive (wal-push): archive_mode must be on, and
pg_basebackup waits until the segment that makes the backup consistent is archived. A
cluster with tablespaces besides pg_default is refused.`,
		Example: "  DB_HOST=db1 drconsole basebackup --gpg-recipient ops-public.asc",
		Args:    noArgs(""),
		RunE:    func(c *cobra.Command, _ []string) error { return runBaseBackup(c.Context(), a, o) },
	}
	f := c.Flags()
	o.conn.add(f)
	f.StringVar(&o.recipient, "gpg-recipient", "", "OpenPGP public key `file` to encrypt to; without it the base backup is compressed, not encrypted")
	f.StringSliceVar(&o.locations, "location", nil, "store into these configured `location`s only (default: every one)")
	f.BoolVar(&o.json, "json", false, "print what was stored as JSON on stdout")
	return c
}

func runBaseBackup(ctx context.Context, a *app, o *baseBackupOptions) error {
	cn, err := o.conn.resolve(a)
	if err != nil {
		return err
	}
	a.warnPasswordInArgs(cn)
	opts := wal.BaseOptions{Conn: cn, Prefix: a.backupPrefixes(cn.Database)[0]}
	if o.recipient != "" {
		if opts.Recipients, err = recovery.ReadRecipientFile(o.recipient); err != nil {
			return usageError{err}
		}
	} else {
		fmt.Fprintln(a.stderr, "drconsole basebackup: warning: not encrypted (give --gpg-recipient): the base backup holds every database of the cluster in the clear")
	}
	if opts.Targets, err = a.folders(ctx, o.locations, storage.BasesOf); err != nil {
		return err
	}
	if !o.json {
		opts.Log = func(s string) { fmt.Fprintln(a.stderr, "basebackup: "+s) }
	}
	b, err := wal.TakeBase(ctx, opts)
	if b != nil {
		if o.json {
			writeJSON(a.stdout, b)
		} else {
			fmt.Fprintf(a.stdout, "stored %s: timeline %d, WAL from %s (%s) to %s (%s), consistent from %s\n",
				b.Name, b.Timeline, b.StartLSN, b.StartWAL, b.StopLSN, b.StopWAL, b.StopTime.Format("2006-01-02 15:04:05 MST"))
		}
	}
	return err
}
