package wal

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"drconsole/recovery"
	"drconsole/storage"
)

// A point-in-time recovery into a data directory: the newest base backup consistent
// before the target, its WAL proven contiguous in the archive from where it starts to past
// the target, unpacked into a new data directory, started with restore_command reading
// the archive through wal-fetch, and judged by what the server's log says.

// ErrTarget: no base backup and archive can reach the recovery target (refused before
// anything is written: recovery.ErrPreflight).
var ErrTarget = fmt.Errorf("%w: the recovery target cannot be reached", recovery.ErrPreflight)

// PITROptions say what to recover and where.
type PITROptions struct {
	Bases []storage.Folder // BasesOf each location
	WAL   []storage.Folder // WALOf each location
	Keys  *recovery.Keys
	// Target is the moment to recover to (recovery stops before the first commit after
	// it); zero with Latest: replay everything the archive holds.
	Target time.Time
	Latest bool
	// LSN, instead of Target: recover to just after this WAL location ("0/3000060").
	LSN    string
	PgData string
	Port   int // the recovered server's port; 0 keeps the backup's
	// Private: a temporary server only this machine's drconsole reaches: no TCP, its
	// socket in PgData's parent directory (which it gets to itself), any local role
	// trusted. For the copy a database is dumped from, never for one to keep.
	Private bool
	// RestoreCommand is restore_command for the recovered server: drconsole wal-fetch
	// with the same configuration and keys, %f %p.
	RestoreCommand string
	Log            func(string)
	// Progress, when set, is told how the recovery goes: its phase, the segments fetched
	// and replayed, and (Private, with Role) the time of the last commit replayed.
	Progress func(PITRProgress)
	// Role is a role of the recovered cluster that a Private server is asked, as it
	// replays, where replay is; "" asks nothing and the log alone says how far it is.
	Role string
}

// Phases of a recovery, in order, as PITRProgress reports them.
const (
	PhaseUnpacking = "unpacking"
	PhaseStarting  = "starting"
	PhaseReplaying = "replaying"
	PhasePromoted  = "promoted"
)

// PITRProgress is how far a recovery is.
type PITRProgress struct {
	Phase    string
	Fetched  int       // segments restore_command brought, and those fetched ahead into the spool
	Replayed int       // segments the server took from the archive
	Segment  string    // the last one it took
	Planned  int       // segments the plan counted from the base backup's start
	Replay   time.Time // the last commit replayed, when known (zero: not known yet)
	Target   time.Time // zero: a WAL location or the latest
}

// PITRPlan is a recovery that passed every check that can be made before writing.
type PITRPlan struct {
	Base     BaseBackup
	Timeline int      // the timeline recovery follows to the target
	Path     []string // how, e.g. ["timeline 1 from the base backup", "timeline 2 from 0/5000000"]
	Segments int      // segments from the base backup's start to the newest one archived
	Newest   string   // the newest segment on the way
	Reaches  time.Time
	opts     PITROptions
	folder   storage.Folder // where the base backup is read from
	lsn      uint64         // opts.LSN read
}

// Target is the moment recovery stops at (zero with Latest).
func (p *PITRPlan) Target() time.Time { return p.opts.Target }

// Latest: recovery replays everything archived.
func (p *PITRPlan) Latest() bool { return p.opts.Latest }

// LSN is the WAL location recovery stops after ("" when it stops at a time).
func (p *PITRPlan) LSN() string { return p.opts.LSN }

// SetPgData sets where Restore recovers to: a new data directory, the server's port, and
// whether it is a private, temporary server (PITROptions.Private).
func (p *PITRPlan) SetPgData(dir string, port int, private bool) {
	p.opts.PgData, p.opts.Port, p.opts.Private = dir, port, private
}

// ParseTarget reads a recovery target time as an operator writes it: UTC unless it says
// otherwise ("2026-11-30 14:29:00", "2026-11-30 14:29:00+02:00", "2026-11-30 14:29").
func ParseTarget(s string) (time.Time, error) {
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
	return time.Time{}, fmt.Errorf("%q is not a time: write YYYY-MM-DD HH:MM:SS (UTC), or add an offset such as +02:00", s)
}

// SetReporting sets who is told how the recovery goes (PITROptions.Log, Progress) and
// the role a Private server is asked where replay is (PITROptions.Role).
func (p *PITRPlan) SetReporting(log func(string), progress func(PITRProgress), role string) {
	p.opts.Log, p.opts.Progress, p.opts.Role = log, progress, role
}

// PgData is where Restore recovers to.
func (p *PITRPlan) PgData() string { return p.opts.PgData }

// PlanPITR chooses the base backup and checks the archive.
func PlanPITR(ctx context.Context, o PITROptions) (*PITRPlan, error) {
	bases, errs := ListBases(ctx, o.Bases)
	if len(bases) == 0 {
		why := "no base backup is stored in any location (take one with drconsole basebackup)"
		if len(errs) > 0 {
			why += ": " + oneLine(errors.Join(errs...))
		}
		return nil, fmt.Errorf("%w: %s", ErrTarget, why)
	}
	p := &PITRPlan{opts: o}
	if o.LSN != "" {
		v, err := parseLSN(o.LSN)
		if err != nil {
			return nil, fmt.Errorf("%w: --to-lsn %s: give a WAL location such as 0/3000060", ErrTarget, o.LSN)
		}
		p.lsn = v
	}
	chosen := -1
	for i, b := range bases {
		stop, _ := parseLSN(b.StopLSN)
		if o.Latest || o.LSN != "" && stop <= p.lsn || o.LSN == "" && !b.StopTime.After(o.Target) {
			chosen = i
			break
		}
	}
	if chosen < 0 && o.LSN != "" {
		oldest := bases[len(bases)-1]
		return nil, fmt.Errorf("%w: %s is before every base backup: the oldest, %s, is consistent from %s", ErrTarget, o.LSN, oldest.Name, oldest.StopLSN)
	}
	if chosen < 0 {
		oldest := bases[len(bases)-1]
		return nil, fmt.Errorf("%w: %s is before every base backup: the oldest, %s, is consistent from %s; choose a later time",
			ErrTarget, stamp(o.Target), oldest.Name, stamp(oldest.StopTime))
	}
	p.Base = bases[chosen]
	for _, f := range o.Bases {
		if f.Name() == p.Base.Location {
			p.folder = f
		}
	}
	if err := p.checkArchive(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// archived is every WAL file the archive holds of the cluster, by name, with when it
// was stored (the earliest copy).
func (p *PITRPlan) archived(ctx context.Context) (map[string]time.Time, error) {
	have := map[string]time.Time{}
	answered := 0
	var errs []error
	for _, w := range p.opts.WAL {
		objs, err := w.Find(ctx, "")
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", w.Name(), err))
			continue
		}
		answered++
		for _, o := range objs {
			b := path.Base(o.Key)
			name := b
			switch {
			case len(b) > 24 && (b[24] == '-' || b[24] == '.') && segmentRE.MatchString(b[:24]):
				if _, ok := parseStored(b, b[:24]); !ok {
					continue
				}
				name = b[:24]
			case len(b) >= 16 && historyRE.MatchString(b[:16]):
				name = b[:16]
			}
			if t, ok := have[name]; !ok || o.Modified.Before(t) {
				have[name] = o.Modified
			}
		}
	}
	if answered == 0 {
		return nil, fmt.Errorf("%w: no location's WAL archive can be read: %v", ErrTarget, errors.Join(errs...))
	}
	for _, err := range errs {
		p.say("WAL archive skipped: %v", err)
	}
	return have, nil
}

func (p *PITRPlan) say(format string, args ...any) {
	if p.opts.Log != nil {
		p.opts.Log(fmt.Sprintf(format, args...))
	}
}

// checkArchive follows the timelines from the base backup's to the one the target is on
// (the newest whose history file was archived before the target), and proves every
// segment from the backup's start is archived, up to a segment archived after the target.
func (p *PITRPlan) checkArchive(ctx context.Context) error {
	have, err := p.archived(ctx)
	if err != nil {
		return err
	}
	b := p.Base
	// Timelines: a history file N lists the timelines N branched from, and was archived
	// when N began. Recovery follows the newest one descending from the backup's that
	// began before the target.
	type branch struct {
		tli   int
		begin uint64 // where it begins, on its parent's WAL
	}
	path := []branch{{b.Timeline, 0}}
	for tli := b.Timeline + 1; ; tli++ {
		name := fmt.Sprintf("%08X.history", tli)
		at, ok := have[name]
		if !ok {
			break
		}
		if !p.opts.Latest && p.opts.LSN == "" && at.After(p.opts.Target) {
			p.say("timeline %d began about %s, after the target: not followed", tli, stamp(at))
			break
		}
		parents, err := p.readHistory(ctx, name)
		if err != nil {
			return err
		}
		begin, descends := uint64(0), false
		for _, h := range parents {
			if h.tli == path[len(path)-1].tli {
				begin, descends = h.end, true
			}
		}
		if !descends || p.opts.LSN != "" && begin > p.lsn {
			break
		}
		path = append(path, branch{tli, begin})
	}
	p.Timeline = path[len(path)-1].tli
	p.Path = []string{fmt.Sprintf("timeline %d from the base backup (%s)", b.Timeline, b.StartLSN)}
	for _, br := range path[1:] {
		p.Path = append(p.Path, fmt.Sprintf("timeline %d from %X/%X", br.tli, br.begin>>32, uint32(br.begin)))
	}
	// Segments, each from the newest timeline of the path that began at or before it.
	start, err := parseLSN(b.StartLSN)
	if err != nil {
		return err
	}
	seg := uint64(b.SegSize)
	perLog := uint64(1<<32) / seg
	nameOf := func(segno uint64) string {
		tli := path[0].tli
		for _, br := range path[1:] {
			if br.begin/seg <= segno {
				tli = br.tli
			}
		}
		return fmt.Sprintf("%08X%08X%08X", tli, segno/perLog, segno%perLog)
	}
	stop, _ := parseLSN(b.StopLSN)
	var last time.Time
	n := 0
	for segno := start / seg; ; segno++ {
		name := nameOf(segno)
		at, ok := have[name]
		if !ok {
			if segno <= stop/seg {
				return fmt.Errorf("%w: the archive lacks %s, which base backup %s needs to be consistent", ErrTarget, name, b.Name)
			}
			if p.opts.LSN != "" && segno <= p.lsn/seg {
				return fmt.Errorf("%w: the archive lacks %s, and %s is in it or after it: recovery could not reach it", ErrTarget, name, p.opts.LSN)
			}
			if p.opts.LSN != "" {
				break
			}
			if later := laterIn(have, name); later != "" && (p.opts.Latest || !last.After(p.opts.Target)) {
				return fmt.Errorf("%w: the archive lacks %s although it holds %s: recovery could not go past %s (archived %s); choose a time before it, or find the missing segment",
					ErrTarget, name, later, p.Newest, stamp(last))
			}
			if !p.opts.Latest && !last.After(p.opts.Target) {
				return fmt.Errorf("%w: the archive's WAL ends with %s (archived %s), before %s: choose an earlier time (base backup %s is consistent from %s), or --to-latest",
					ErrTarget, p.Newest, stamp(last), stamp(p.opts.Target), b.Name, stamp(b.StopTime))
			}
			break
		}
		n++
		p.Newest, last = name, at
		if p.opts.LSN != "" && segno > p.lsn/seg {
			break // the one after the target's: PostgreSQL reads on to it
		}
		if !p.opts.Latest && p.opts.LSN == "" && at.After(p.opts.Target.Add(time.Minute)) && segno > stop/seg {
			// Archived after the target: it holds the target's moment, or a later one.
			// Segments past it are not needed.
			break
		}
	}
	p.Segments, p.Reaches = n, last
	return nil
}

// laterIn is a segment of name's timeline after it that have holds, if any.
func laterIn(have map[string]time.Time, name string) string {
	later := ""
	for n := range have {
		if len(n) == 24 && n[:8] == name[:8] && n > name && (later == "" || n < later) {
			later = n
		}
	}
	return later
}

type historyEntry struct {
	tli int
	end uint64
}

// readHistory reads a timeline history file: lines "parentTLI  switchLSN  reason".
func (p *PITRPlan) readHistory(ctx context.Context, name string) ([]historyEntry, error) {
	dir, err := os.MkdirTemp("", "drconsole-history")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	dest := filepath.Join(dir, name)
	f := &Fetcher{Locations: p.opts.WAL, Keys: p.opts.Keys}
	if _, err := f.Fetch(ctx, name, dest); err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrTarget, name, err)
	}
	data, err := os.ReadFile(dest)
	if err != nil {
		return nil, err
	}
	var out []historyEntry
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		tli, err1 := strconv.Atoi(fields[0])
		end, err2 := parseLSN(fields[1])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%w: %s: cannot read %q", ErrTarget, name, line)
		}
		out = append(out, historyEntry{tli, end})
	}
	return out, nil
}

// PITRResult is what the recovered server says it did.
type PITRResult struct {
	Major       int       `json:"pg_major"`
	PgData      string    `json:"pgdata"`
	Port        int       `json:"port"`
	Stopped     string    `json:"stopped"`      // the server's line: where recovery stopped
	StopTime    time.Time `json:"stop_time"`    // the time in that line (zero: none)
	LastCommit  time.Time `json:"last_commit"`  // "last completed transaction was at log time …" (zero: none)
	NewTimeline int       `json:"new_timeline"` // the timeline it promoted to
	Replayed    int       `json:"segments"`     // segments taken from the archive
	LastSegment string    `json:"last_segment"` // the last of them
	Log         string    `json:"log"`          // the server's log file
}

// Point is the moment the recovered data is from, as the server's log says: the last
// commit replayed, else where recovery stopped. Zero when it does not say.
func (r *PITRResult) Point() time.Time {
	if !r.LastCommit.IsZero() {
		return r.LastCommit
	}
	return r.StopTime
}

// logTime reads a timestamp as the server logs it ("2026-11-30 14:29:00.412+00").
func logTime(s string) time.Time {
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "."))
	for _, layout := range []string{"2006-01-02 15:04:05-07", "2006-01-02 15:04:05-07:00", "2006-01-02 15:04:05 MST"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// readLog reads what the recovering server's log says so far into res.
func (res *PITRResult) readLog(text string) {
	res.Replayed = 0
	seen := map[string]bool{} // a segment may be restored twice (the checkpoint's, then replay's)
	for _, l := range strings.Split(text, "\n") {
		if i := strings.Index(l, "recovery stopping"); i >= 0 {
			res.Stopped = strings.TrimSpace(l[i:])
			if j := strings.LastIndex(res.Stopped, ", time "); j >= 0 {
				res.StopTime = logTime(res.Stopped[j+len(", time "):])
			}
		}
		if i := strings.Index(l, "last completed transaction was at log time "); i >= 0 {
			res.LastCommit = logTime(l[i+len("last completed transaction was at log time "):])
		}
		if i := strings.Index(l, `restored log file "`); i >= 0 {
			name, _, _ := strings.Cut(l[i+len(`restored log file "`):], `"`)
			if segmentRE.MatchString(name) && !seen[name] {
				seen[name] = true
				res.Replayed++
				res.LastSegment = name
			}
		}
		if i := strings.Index(l, "selected new timeline ID: "); i >= 0 {
			if f := strings.Fields(l[i+len("selected new timeline ID: "):]); len(f) > 0 {
				res.NewTimeline, _ = strconv.Atoi(f[0])
			}
		}
	}
}

// Restore unpacks the base backup into PgData, configures recovery and starts the
// server; it returns once the server has promoted, with what its log says.
func (p *PITRPlan) Restore(ctx context.Context) (*PITRResult, error) {
	o := p.opts
	if err := emptyDir(o.PgData); err != nil {
		return nil, err
	}
	owner, err := serverAccount()
	if err != nil {
		return nil, err
	}
	pgctl, err := ServerBin(p.Base.Major, "pg_ctl")
	if err != nil {
		return nil, err
	}
	p.say("unpacking %s from %s into %s", p.Base.Name, p.folder, o.PgData)
	p.report(PITRProgress{Phase: PhaseUnpacking})
	if err := p.unpack(ctx, owner); err != nil {
		os.RemoveAll(o.PgData)
		return nil, err
	}
	target := "recovery_target_timeline = '" + strconv.Itoa(p.Timeline) + "'\n"
	switch {
	case o.LSN != "":
		target += "recovery_target_lsn = '" + o.LSN + "'\n"
	case !o.Latest:
		target += "recovery_target_time = '" + o.Target.UTC().Format("2006-01-02 15:04:05.999999") + "+00'\n"
	}
	conf := "\n# drconsole restore: point-in-time recovery from " + p.Base.Name + "\n" +
		"restore_command = '" + strings.ReplaceAll(RestoreCommand(o.RestoreCommand), "'", "''") + "'\n" + target +
		"recovery_target_action = 'promote'\n" +
		"# never write the restored server's WAL into production's archive\narchive_mode = 'off'\n"
	if o.Port > 0 {
		conf += "port = " + strconv.Itoa(o.Port) + "\n"
	}
	if o.Private {
		parent := filepath.Dir(filepath.Clean(o.PgData))
		conf += "listen_addresses = ''\nunix_socket_directories = '" + strings.ReplaceAll(parent, "'", "''") + "'\n"
		if err := os.WriteFile(filepath.Join(o.PgData, "pg_hba.conf"), []byte("local all all trust\n"), 0o600); err != nil {
			return nil, err
		}
		if err := os.Chmod(parent, 0o700); err != nil {
			return nil, err
		}
		if err := chownAll(parent, owner); err != nil {
			return nil, err
		}
	}
	if err := appendFile(filepath.Join(o.PgData, "postgresql.auto.conf"), conf); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.PgData, "recovery.signal"), nil, 0o600); err != nil {
		return nil, err
	}
	if err := chownAll(o.PgData, owner); err != nil {
		return nil, err
	}
	logFile := filepath.Join(filepath.Dir(filepath.Clean(o.PgData)), filepath.Base(o.PgData)+".log")
	if f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err == nil {
		f.Close()
		chownAll(logFile, owner)
	}
	p.say("starting the server on %s with restore_command reading the archive", o.PgData)
	p.report(PITRProgress{Phase: PhaseStarting})
	cmd := exec.CommandContext(ctx, pgctl, "-D", o.PgData, "-l", logFile, "-w", "-t", "3600", "start")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: owner.cred}
	cmd.Dir = o.PgData
	cmd.Env = serverEnv()
	// pg_ctl -w returns once connections are accepted, which with a target in recovery
	// is before the promotion (and may be after most of the replay): the log is watched
	// meanwhile, and until it says the recovery ended.
	type started struct {
		out []byte
		err error
	}
	startDone := make(chan started, 1)
	go func() {
		out, err := cmd.CombinedOutput()
		startDone <- started{out, err}
	}()
	res := &PITRResult{PgData: o.PgData, Port: o.Port, Log: logFile, Major: p.Base.Major}
	ctlDone := false
	w := &replayWatch{p: p, spool: SpoolFor(filepath.Join(o.PgData, "pg_wal", "RECOVERYXLOG"))}
	defer w.close()
	for {
		select {
		case st := <-startDone:
			ctlDone = true
			if st.err != nil {
				if errors.Is(st.err, fs.ErrPermission) {
					return nil, fmt.Errorf("%w: the postgres account cannot reach %s (a directory above it is closed to it): recover into a directory it can reach", recovery.ErrPreflight, o.PgData)
				}
				return nil, fmt.Errorf("the recovered server did not start: %v: %s; its log: %s", st.err, strings.TrimSpace(string(st.out)), lastLines(logFile, 5))
			}
		default:
		}
		log, _ := os.ReadFile(logFile)
		text := string(log)
		res.readLog(text)
		w.report(ctx, res, ctlDone)
		switch {
		case ctlDone && strings.Contains(text, "database system is ready to accept connections") && res.NewTimeline > 0 &&
			strings.Contains(text, "archive recovery complete"):
			if !o.Latest && res.Stopped == "" {
				to := stamp(o.Target)
				if o.LSN != "" {
					to = o.LSN
				}
				return res, fmt.Errorf("the server promoted to timeline %d without reaching %s: the archive ends before it (its log: %s)", res.NewTimeline, to, logFile)
			}
			w.phase = PhasePromoted
			w.report(ctx, res, true)
			return res, nil
		case strings.Contains(text, "FATAL") || strings.Contains(text, "PANIC"):
			if !ctlDone {
				<-startDone // pg_ctl gives up once the server has stopped
			}
			return res, fmt.Errorf("recovery failed; the server's log says: %s", lastLines(logFile, 5))
		}
		select {
		case <-ctx.Done():
			if !ctlDone {
				<-startDone
			}
			return res, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (p *PITRPlan) report(e PITRProgress) {
	if p.opts.Progress == nil {
		return
	}
	e.Planned = p.Segments
	if !p.opts.Latest && p.opts.LSN == "" {
		e.Target = p.opts.Target
	}
	p.opts.Progress(e)
}

// replayWatch turns what the recovering server says into PITRProgress: the log's
// segments, the spool's segments fetched ahead, and (Private, with a Role) the time of
// the last commit replayed, asked of the server on one connection.
type replayWatch struct {
	p      *PITRPlan
	spool  string
	phase  string
	conn   *pgx.Conn
	tried  time.Time
	replay time.Time
}

func (w *replayWatch) report(ctx context.Context, res *PITRResult, accepting bool) {
	if w.p.opts.Progress == nil {
		return
	}
	if w.phase == "" || w.phase == PhaseStarting {
		w.phase = PhaseStarting
		if res.Replayed > 0 {
			w.phase = PhaseReplaying
		}
	}
	o := w.p.opts
	if accepting && o.Private && o.Role != "" && w.conn == nil && time.Since(w.tried) > time.Second {
		w.tried = time.Now()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		w.conn, _ = pgx.Connect(cctx, fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable connect_timeout=2", filepath.Dir(filepath.Clean(o.PgData)), o.Port, o.Role))
		cancel()
	}
	if w.conn != nil {
		var t *time.Time
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := w.conn.QueryRow(qctx, `SELECT pg_last_xact_replay_timestamp()`).Scan(&t); err != nil {
			w.close()
		} else if t != nil {
			w.replay = t.UTC()
		}
		cancel()
	}
	replay := w.replay
	if !res.LastCommit.IsZero() {
		replay = res.LastCommit
	}
	fetched := res.Replayed
	if entries, err := os.ReadDir(w.spool); err == nil {
		for _, e := range entries {
			// The spool keeps the segment restored last, and the one before it.
			if segmentRE.MatchString(e.Name()) && e.Name() > res.LastSegment {
				fetched++
			}
		}
	}
	w.p.report(PITRProgress{Phase: w.phase, Fetched: fetched, Replayed: res.Replayed, Segment: res.LastSegment, Replay: replay})
}

func (w *replayWatch) close() {
	if w.conn != nil {
		w.conn.Close(context.Background())
		w.conn = nil
	}
}

// Stop stops the recovered server (fast: it is a copy).
func (r *PITRResult) Stop() error {
	defer EndPrefetch(r.PgData)
	pgctl, err := ServerBin(r.Major, "pg_ctl")
	if err != nil {
		return err
	}
	owner, err := serverAccount()
	if err != nil {
		return err
	}
	cmd := exec.Command(pgctl, "-D", r.PgData, "-m", "fast", "-w", "stop")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: owner.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("stopping the recovered server: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// RecoveryPoint is the time of the last transaction the recovered server replayed: the
// moment the data is from. Zero when it cannot tell (nothing replayed).
func (r *PITRResult) RecoveryPoint(ctx context.Context, role string) time.Time {
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable", filepath.Dir(filepath.Clean(r.PgData)), r.Port, role))
	if err != nil {
		return time.Time{}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var t *time.Time
	if conn.QueryRow(ctx, `SELECT pg_last_xact_replay_timestamp()`).Scan(&t) != nil || t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// Dump writes database of a Private recovered server as a custom-format archive to
// file, connecting as role (any role the cluster has: local connections are trusted).
func (r *PITRResult) Dump(ctx context.Context, database, role, file string) error {
	bin, err := ServerBin(r.Major, "pg_dump")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "-Fc", "-b", "--no-password", "-h", filepath.Dir(filepath.Clean(r.PgData)), "-p", strconv.Itoa(r.Port), "-U", role, "-f", file, database)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C", "PGCONNECT_TIMEOUT=15"} // none of drconsole's secrets
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("dumping %s from the recovered server: %v: %s", database, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// unpack streams the base backup, decrypted and decompressed, through a tar reader into
// PgData: only directories and regular files, only inside it.
func (p *PITRPlan) unpack(ctx context.Context, owner *account) error {
	objs, err := p.folder.Find(ctx, p.Base.Name)
	if err != nil {
		return err
	}
	var obj *storage.Backup
	for i := range objs {
		if path.Base(objs[i].Key) == p.Base.Name {
			obj = &objs[i]
		}
	}
	if obj == nil {
		return fmt.Errorf("%w: %s is not in %s any more", ErrTarget, p.Base.Name, p.folder)
	}
	rc, err := p.folder.Open(ctx, *obj)
	if err != nil {
		return err
	}
	defer rc.Close()
	r, closeAll, _, err := peel(rc, p.opts.Keys)
	if err != nil {
		return err
	}
	defer closeAll()
	tr := tar.NewReader(bufio.NewReaderSize(r, 1<<20))
	root := filepath.Clean(p.opts.PgData)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %s: %v", recovery.ErrCorrupt, p.Base.Name, err)
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
			return fmt.Errorf("%w: %s holds a path outside the data directory: %q", recovery.ErrCorrupt, p.Base.Name, printable(h.Name))
		}
		dst := filepath.Join(root, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return err
			}
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return fmt.Errorf("%w: %s: %v", recovery.ErrCorrupt, p.Base.Name, err)
			}
			if err := f.Close(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: %s holds %q, neither a file nor a directory (a tablespace link?): drconsole restores only what it streams itself", recovery.ErrCorrupt, p.Base.Name, printable(h.Name))
		}
	}
	// Read on to the end: the layers' integrity checks (MDC, zstd checksum) are there.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("%w: %s: %v", recovery.ErrCorrupt, p.Base.Name, err)
	}
	if _, err := os.Stat(filepath.Join(root, "PG_VERSION")); err != nil {
		return fmt.Errorf("%w: %s holds no PG_VERSION: not a base backup", recovery.ErrCorrupt, p.Base.Name)
	}
	return os.Chmod(root, 0o700)
}

// serverEnv is the recovered server's environment, which its restore_command inherits:
// drconsole's, for the locations' settings, AWS's chain and a key's passphrase, without
// the target's database password, which the recovered server has no use for.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "DB_PASSWORD", "PGPASSWORD", "DATABASE_URL", "PGPASSFILE":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// emptyDir makes dir if it does not exist, and refuses one that holds anything.
func emptyDir(dir string) error {
	if dir == "" {
		return errors.New("--pgdata is needed: the directory of the recovered server")
	}
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("%w: %s is not empty: drconsole recovers into a new data directory only", recovery.ErrPreflight, dir)
	}
	return nil
}

// account is the OS account the recovered server runs as: this one, or "postgres" when
// this is root (PostgreSQL refuses to run as root).
type account struct {
	cred     *syscall.Credential
	uid, gid int
}

func serverAccount() (*account, error) {
	if os.Geteuid() != 0 {
		return &account{uid: -1, gid: -1}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w: running as root, and there is no postgres account to run the recovered server as", recovery.ErrPreflight)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &account{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid: uid, gid: gid}, nil
}

// RunAsServer makes cmd run as the account PostgreSQL runs as here: this one, or
// postgres when this is root.
func RunAsServer(cmd *exec.Cmd) error {
	a, err := serverAccount()
	if err != nil {
		return err
	}
	if a.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: a.cred}
	}
	return nil
}

// GiveToServer makes path, and what is under it, the server account's.
func GiveToServer(path string) error {
	a, err := serverAccount()
	if err != nil {
		return err
	}
	return chownAll(path, a)
}

func chownAll(root string, a *account) error {
	if a.uid < 0 {
		return nil
	}
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, a.uid, a.gid)
	})
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func lastLines(file string, n int) string {
	b, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
