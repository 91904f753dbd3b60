package wal

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"drconsole/recovery"
	"drconsole/storage"
)

// BaseBackup is what is stored beside a base backup (NAME.json): enough to choose one for
// a point in time, and to check its WAL, without its key.
type BaseBackup struct {
	Name      string    `json:"name"` // the tar's stored name
	Server    string    `json:"server"`
	SystemID  string    `json:"system_identifier"`
	Version   string    `json:"pg_version"` // server_version
	Major     int       `json:"pg_major"`
	Timeline  int       `json:"timeline"`
	StartLSN  string    `json:"start_lsn"`
	StopLSN   string    `json:"stop_lsn"`
	StartWAL  string    `json:"start_wal"` // the segment replay starts from
	StopWAL   string    `json:"stop_wal"`  // the segment that makes it consistent
	StartTime time.Time `json:"start_time"`
	StopTime  time.Time `json:"stop_time"` // a recovery target must not be before it
	SegSize   int64     `json:"wal_segment_size"`
	Size      int64     `json:"size"` // stored bytes
	Encrypted bool      `json:"encrypted"`

	Location string `json:"-"` // where it was listed from
}

// BaseOptions are what TakeBase needs.
type BaseOptions struct {
	Conn       *recovery.Conn
	Recipients openpgp.EntityList // none: compressed only
	Prefix     string             // the application's prefix in the name
	Targets    []storage.Folder   // BasesOf each location, the first streamed to, the others copied
	Log        func(string)
}

// ErrBaseRefused: the cluster cannot give a base backup drconsole can restore.
var ErrBaseRefused = errors.New("base backup refused")

// TakeBase streams pg_basebackup (one tar, no temporary copy of the cluster on disk)
// through zstd and OpenPGP into the first target, copies it to the others, and stores its
// description beside it in each.
func TakeBase(ctx context.Context, o BaseOptions) (*BaseBackup, error) {
	say := func(format string, args ...any) {
		if o.Log != nil {
			o.Log(fmt.Sprintf(format, args...))
		}
	}
	if len(o.Targets) == 0 {
		return nil, errors.New("no backup location is configured")
	}
	conn, err := o.Conn.Connect(ctx, "postgres")
	if err != nil {
		return nil, err
	}
	b := &BaseBackup{Server: o.Conn.Server(), Encrypted: len(o.Recipients) > 0}
	var spaces int
	var mode, level string
	err = conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('server_version_num')::int / 10000,
		(SELECT system_identifier::text FROM pg_control_system()), (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'),
		current_setting('archive_mode'), current_setting('wal_level'),
		(SELECT count(*) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global'))`).Scan(
		&b.Version, &b.Major, &b.SystemID, &b.SegSize, &mode, &level, &spaces)
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the cluster's settings: %v", recovery.ErrDatabase, err)
	}
	switch {
	case spaces > 0:
		return nil, fmt.Errorf("%w: the cluster has %d tablespace(s) besides pg_default: drconsole streams a base backup as one tar and cannot restore the others; take it with pg_basebackup -Ft into a directory instead", ErrBaseRefused, spaces)
	case mode == "off":
		return nil, fmt.Errorf("%w: archive_mode is off: a base backup without its WAL archived cannot be brought to any point in time (drconsole wal-status prints the settings)", ErrBaseRefused)
	case level == "minimal":
		return nil, fmt.Errorf("%w: wal_level is minimal: set it to replica", ErrBaseRefused)
	}
	bin, err := ServerBin(b.Major, "pg_basebackup")
	if err != nil {
		return nil, err
	}
	b.StartTime = time.Now().UTC()
	b.Name = fmt.Sprintf("%s_base_%s.tar.zst", o.Prefix, b.StartTime.Format("20060102_150405"))
	if b.Encrypted {
		b.Name += ".gpg"
	}
	// -X none: the WAL comes from the archive, and pg_basebackup waits until the
	// segment that makes the backup consistent is archived.
	cmd := exec.CommandContext(ctx, bin, "-D", "-", "-F", "tar", "-X", "none", "-c", "fast", "-v", "--no-password")
	cmd.Env = o.Conn.Env("")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %v", bin, err)
	}
	var log struct {
		sync.Mutex
		lines []string
	}
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.Lock()
			log.lines = append(log.lines, sc.Text())
			log.Unlock()
		}
	}()
	say("streaming pg_basebackup from %s into %s as %s", b.Server, o.Targets[0], b.Name)
	// A copy of the tar goes past a reader that takes the backup's label (where it starts)
	// and its manifest (where its WAL ends) out of it.
	lr, lw := io.Pipe()
	labels := make(chan backupLabels, 1)
	go func() { labels <- readLabels(lr) }()
	pr, pw := io.Pipe()
	go func() {
		err := encode(pw, io.TeeReader(stdout, lw), o.Recipients)
		lw.CloseWithError(err)
		pw.CloseWithError(err)
	}()
	stored, putErr := o.Targets[0].Put(ctx, b.Name, pr)
	pr.CloseWithError(errors.New("upload ended"))
	<-logDone
	waitErr := cmd.Wait()
	b.StopTime = time.Now().UTC()
	if waitErr != nil || putErr != nil {
		if putErr == nil {
			// pg_basebackup failed after the stream ended: what was stored is not a
			// backup. It cannot be removed through the location; say so.
			return nil, fmt.Errorf("pg_basebackup failed (%v): %s; %s in %s is incomplete, delete it", waitErr, lastLine(log.lines), b.Name, o.Targets[0])
		}
		if waitErr != nil {
			return nil, fmt.Errorf("pg_basebackup failed (%v): %s", waitErr, lastLine(log.lines))
		}
		return nil, fmt.Errorf("storing %s in %s: %w", b.Name, o.Targets[0], putErr)
	}
	b.Size = stored.Size
	if err := b.fromLabels(<-labels); err != nil {
		return nil, err
	}
	desc, _ := json.MarshalIndent(b, "", "  ")
	if _, err := o.Targets[0].Put(ctx, b.Name+".json", strings.NewReader(string(desc)+"\n")); err != nil {
		return nil, fmt.Errorf("storing %s.json in %s: %w", b.Name, o.Targets[0], err)
	}
	say("stored %s (%d bytes) in %s", b.Name, b.Size, o.Targets[0])
	var failed []string
	for _, t := range o.Targets[1:] {
		if err := copyBase(ctx, o.Targets[0], stored, t, b.Name, desc); err != nil {
			failed = append(failed, t.Name()+": "+oneLine(err))
			continue
		}
		say("copied %s to %s", b.Name, t)
	}
	if len(failed) > 0 {
		return b, fmt.Errorf("%s is stored in %s but not in every location: %s", b.Name, o.Targets[0].Name(), strings.Join(failed, "; "))
	}
	return b, nil
}

func copyBase(ctx context.Context, from storage.Folder, b storage.Backup, to storage.Folder, name string, desc []byte) error {
	rc, err := from.Open(ctx, b)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := to.Put(ctx, name, rc); err != nil {
		return err
	}
	_, err = to.Put(ctx, name+".json", strings.NewReader(string(desc)+"\n"))
	return err
}

// backupLabels are what the tar says about the backup: backup_label's lines and the
// manifest's WAL range.
type backupLabels struct {
	label    map[string]string
	walRange struct {
		Timeline   int
		Start, End string
	}
	err error
}

// readLabels reads a tar stream to its end, keeping backup_label and backup_manifest.
func readLabels(r *io.PipeReader) (out backupLabels) {
	defer io.Copy(io.Discard, r) // whatever happens, the stream must flow on
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			out.err = err
			return out
		}
		switch h.Name {
		case "backup_label":
			data, err := io.ReadAll(io.LimitReader(tr, 1<<16))
			if err != nil {
				out.err = err
				return out
			}
			out.label = map[string]string{}
			for _, line := range strings.Split(string(data), "\n") {
				if k, v, ok := strings.Cut(line, ": "); ok {
					out.label[k] = strings.TrimSpace(v)
				}
			}
		case "backup_manifest":
			var m struct {
				WALRanges []struct {
					Timeline int    `json:"Timeline"`
					Start    string `json:"Start-LSN"`
					End      string `json:"End-LSN"`
				} `json:"WAL-Ranges"`
			}
			if err := json.NewDecoder(io.LimitReader(tr, 256<<20)).Decode(&m); err != nil {
				out.err = fmt.Errorf("backup_manifest: %v", err)
				return out
			}
			if n := len(m.WALRanges); n > 0 {
				out.walRange.Timeline, out.walRange.Start, out.walRange.End = m.WALRanges[n-1].Timeline, m.WALRanges[0].Start, m.WALRanges[n-1].End
			}
		}
	}
}

// fromLabels takes the start and stop points from the tar's backup_label and manifest.
func (b *BaseBackup) fromLabels(l backupLabels) error {
	if l.err != nil {
		return fmt.Errorf("reading the base backup's label: %v", l.err)
	}
	start, _, _ := strings.Cut(l.label["START WAL LOCATION"], " ")
	b.StartLSN, b.StopLSN = start, l.walRange.End
	b.Timeline, _ = strconv.Atoi(l.label["START TIMELINE"])
	if t, err := time.Parse("2006-01-02 15:04:05 MST", l.label["START TIME"]); err == nil {
		b.StartTime = t.UTC()
	}
	if b.StartLSN == "" || b.StopLSN == "" || b.Timeline == 0 {
		return fmt.Errorf("the base backup's tar holds no backup_label or manifest saying where its WAL starts and ends")
	}
	if l.walRange.Timeline != 0 && l.walRange.Timeline != b.Timeline {
		return fmt.Errorf("the base backup starts on timeline %d and ends on %d: take it again once the server has settled on its timeline", b.Timeline, l.walRange.Timeline)
	}
	var err error
	if b.StartWAL, err = walFileOf(b.Timeline, b.StartLSN, b.SegSize); err != nil {
		return err
	}
	b.StopWAL, err = walFileOf(b.Timeline, b.StopLSN, b.SegSize)
	return err
}

// walFileOf is the segment holding lsn ("0/2000028") on timeline tli.
func walFileOf(tli int, lsn string, segSize int64) (string, error) {
	v, err := parseLSN(lsn)
	if err != nil {
		return "", err
	}
	segno := v / uint64(segSize)
	perLog := uint64(1<<32) / uint64(segSize)
	return fmt.Sprintf("%08X%08X%08X", tli, segno/perLog, segno%perLog), nil
}

func parseLSN(lsn string) (uint64, error) {
	hi, lo, ok := strings.Cut(lsn, "/")
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%q is not an LSN", lsn)
	}
	return h<<32 | l, nil
}

func lastLine(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if s := strings.TrimSpace(lines[i]); s != "" {
			return s
		}
	}
	return "no message"
}

// ListBases lists the base backups every folder describes, newest first; a folder that
// cannot be read is reported in errs and skipped.
func ListBases(ctx context.Context, folders []storage.Folder) (bases []BaseBackup, errs []error) {
	for _, f := range folders {
		objs, err := f.Find(ctx, "")
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.Name(), err))
			continue
		}
		have := map[string]storage.Backup{}
		for _, o := range objs {
			have[path.Base(o.Key)] = o
		}
		for name, o := range have {
			tar, ok := strings.CutSuffix(name, ".json")
			if !ok {
				continue
			}
			if _, ok := have[tar]; !ok {
				continue // described, but the backup itself is not there
			}
			b, err := readDesc(ctx, f, o)
			if err != nil || b.Name != tar {
				errs = append(errs, fmt.Errorf("%s: %s cannot be read: %v", f.Name(), name, err))
				continue
			}
			b.Location = f.Name()
			bases = append(bases, b)
		}
	}
	sort.Slice(bases, func(i, j int) bool {
		if !bases[i].StopTime.Equal(bases[j].StopTime) {
			return bases[i].StopTime.After(bases[j].StopTime)
		}
		return bases[i].Location < bases[j].Location
	})
	return bases, errs
}

func readDesc(ctx context.Context, f storage.Folder, o storage.Backup) (BaseBackup, error) {
	rc, err := f.Open(ctx, o)
	if err != nil {
		return BaseBackup{}, err
	}
	defer rc.Close()
	var b BaseBackup
	err = json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&b)
	return b, err
}

// ServerBin finds a PostgreSQL program of major version major: in $DRCONSOLE_PG_BINDIR,
// /usr/lib/postgresql/MAJOR/bin, or on $PATH when it is that version.
func ServerBin(major int, name string) (string, error) {
	var dirs []string
	if d := os.Getenv("DRCONSOLE_PG_BINDIR"); d != "" {
		dirs = append(dirs, d)
	}
	dirs = append(dirs, fmt.Sprintf("/usr/lib/postgresql/%d/bin", major))
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		out, _ := exec.Command(p, "--version").Output()
		if f := strings.Fields(string(out)); len(f) > 0 {
			if v := f[len(f)-1]; strings.HasPrefix(v, strconv.Itoa(major)+".") || v == strconv.Itoa(major) {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%w: %s of PostgreSQL %d not found (install postgresql-%d, or set DRCONSOLE_PG_BINDIR)", recovery.ErrPreflight, name, major, major)
}

// Reach is what point-in-time recovery can reach from one location: from its oldest
// base backup's consistency point to its newest archived WAL file (restore --to-time then
// proves the WAL between is contiguous).
type Reach struct {
	Location string       `json:"location"`
	Bases    []BaseBackup `json:"base_backups"`
	From     time.Time    `json:"from,omitzero"`
	To       time.Time    `json:"to,omitzero"`
	Error    string       `json:"error,omitempty"`
}

// Reaches says, for each location, what point-in-time recovery can reach from it.
func Reaches(ctx context.Context, locs []storage.Location) []Reach {
	out := make([]Reach, len(locs))
	var wg sync.WaitGroup
	for i, l := range locs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := Reach{Location: l.Name(), Bases: []BaseBackup{}}
			bases, errs := ListBases(ctx, []storage.Folder{storage.BasesOf(l)})
			if len(errs) > 0 {
				r.Error = oneLine(errors.Join(errs...))
			}
			if bases != nil {
				r.Bases = bases
			}
			if len(bases) > 0 {
				r.From = bases[len(bases)-1].StopTime
				if n := newest(ctx, storage.WALOf(l)); n.Error != "" {
					r.Error = n.Error
				} else if n.At.After(r.From) {
					r.To = n.At
				}
			}
			out[i] = r
		}()
	}
	wg.Wait()
	return out
}
