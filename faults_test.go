package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"

	"drconsole/checklists"
	"drconsole/internal/gpgtest"
	"drconsole/internal/pgtest"
)

// The safety contract under faults: a real cluster, a real encrypted backup, and `restore
// --yes` run as its own process, interrupted at many points — chosen by watching the
// server (streaming, index builds) or held at a fault point of a -tags faultpoints build
// (checks, just after CREATE DATABASE, before and inside the swap's transaction, just
// after its commit) — by SIGKILL, SIGINT, a server crash-restart or cut connections. After
// each, and after the next run (`check --drop-leftovers`), the live database accepts
// connections and holds exactly the old or the restored rows, no scratch database remains
// that the next run did not announce, and the journal's last word matches the catalog.

// eventSchema adds an event log big enough that streaming and index builds can be seen
// on the server while they happen.
const eventSchema = `
CREATE TABLE "Event" (id bigint PRIMARY KEY, "userId" int, kind text, payload text, at timestamptz);
INSERT INTO "Event" SELECT g, g % 200, 'k' || (g % 17), md5(g::text) || md5((g * 3)::text), '2024-01-01'::timestamptz + g * interval '1 second'
FROM generate_series(1, 300000) g;
CREATE INDEX ON "Event" (payload);
CREATE INDEX ON "Event" (kind, at);
`

// faultRig is the cluster, the backup and the damaged state every case starts from. One
// is built per test binary, on the shared cluster (the package's tests run one at a time,
// so a case may restart it).
type faultRig struct {
	c         *pgtest.Cluster
	bin       string
	dir       string // backup directory; the decryption key is in it too
	keyFile   string
	source    string // the database the backup is of
	damaged   string // the damaged live data, the template of every case's live database
	backupFP  string // fingerprint of the backed-up data
	damagedFP string // fingerprint of the damaged live data
	n         int
}

var faultRigOnce struct {
	sync.Mutex
	r *faultRig
}

func newFaultRig(t *testing.T) *faultRig {
	t.Helper()
	faultRigOnce.Lock()
	defer faultRigOnce.Unlock()
	if faultRigOnce.r != nil {
		return faultRigOnce.r
	}
	dir, err := os.MkdirTemp("", "drconsole-faults-data")
	if err != nil {
		t.Fatal(err)
	}
	faultDirs = append(faultDirs, dir)
	c := pgtest.Shared(t)
	r := &faultRig{c: c, bin: drconsoleBinary(t, "faultpoints"), dir: dir, source: c.NewDB(t)}
	key := gpgtest.NewKey(t, "Ops", "")
	secret, err := os.ReadFile(key.SecretFile)
	if err != nil {
		t.Fatal(err)
	}
	r.keyFile = filepath.Join(dir, "ops-secret.asc")
	if err := os.WriteFile(r.keyFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	r.c.Exec(t, r.source, cliSchema+eventSchema)
	r.backupFP = faultFingerprint(t, r.c, r.source)
	raw := filepath.Join(r.dir, "raw.dump")
	dump := exec.Command(filepath.Join(r.c.BinDir, "pg_dump"), "-Fc", "-b", "-f", raw, r.source)
	dump.Env = append(os.Environ(), r.c.Env(r.source)...)
	if out, err := dump.CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v %s", err, out)
	}
	if out, err := exec.Command("gzip", raw).CombinedOutput(); err != nil {
		t.Fatalf("gzip: %v %s", err, out)
	}
	key.Encrypt(t, raw+".gz", filepath.Join(r.dir, "spywatcher_full_20240125_120000.dump.gz.gpg"))
	os.Remove(raw + ".gz")
	// The incident: the live data is damaged. Each case starts from a copy of this.
	r.damaged = r.source + "_damaged"
	r.c.Exec(t, "postgres", "CREATE DATABASE "+r.damaged+" TEMPLATE "+r.source)
	r.c.Exec(t, r.damaged, `DELETE FROM "ApiKey"; UPDATE "User" SET username = 'lost'; DELETE FROM "Event" WHERE id % 2 = 0`)
	r.damagedFP = faultFingerprint(t, r.c, r.damaged)
	if r.damagedFP == r.backupFP {
		t.Fatal("the damage changed nothing")
	}
	faultRigOnce.r = r
	return r
}

// faultDirs are the rig's files, removed when the test binary ends (TestMain).
var faultDirs []string

func faultFingerprint(t *testing.T, c *pgtest.Cluster, db string) string {
	t.Helper()
	fp := cliFingerprint(t, c, db)
	rows := c.Query(t, db, `SELECT count(*) || ':' || md5(string_agg(id || kind || payload, ',' ORDER BY id)) FROM "Event"`)
	return fp + " " + rows[0][0]
}

// faultCase is one interruption: where, and how.
type faultCase struct {
	at    string // a fault point, or "stream" / "indexes" (watched on the server)
	fault string // "kill" (SIGKILL), "int" (SIGINT), "restart" (server crash-restart), "cut" (sessions terminated)
}

// liveState is what the server says about a case's live database.
func (r *faultRig) liveState(t *testing.T, live string) (fp string, allowConn bool) {
	t.Helper()
	rows := r.c.Query(t, "postgres", "SELECT datallowconn FROM pg_database WHERE datname = '"+live+"'")
	if len(rows) != 1 {
		t.Fatalf("no database %s on the server", live)
	}
	return faultFingerprint(t, r.c, live), rows[0][0] == "t"
}

func (r *faultRig) databasesLike(t *testing.T, prefix string) []string {
	var out []string
	for _, d := range r.c.Databases(t) {
		if strings.HasPrefix(d, prefix) {
			out = append(out, d)
		}
	}
	return out
}

// env is a case's environment: the connection in DB_*, its own state directory.
func (r *faultRig) env(live, state, point string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + state, "USER=oncall",
		"DB_HOST=127.0.0.1", "DB_PORT=" + strconv.Itoa(r.c.Port), "DB_USER=" + r.c.User, "DB_PASSWORD=" + r.c.Password, "DB_NAME=" + live,
		"PGSSLMODE=disable", "BACKUP_DIR=" + r.dir, "BACKUP_PREFIX=spywatcher", "XDG_STATE_HOME=" + state, "XDG_CONFIG_HOME=" + state}
	if point != "" {
		env = append(env, "DRCONSOLE_FAULTPOINT="+point)
	}
	return env
}

// restoreProcess is a running `drconsole restore --yes`.
type restoreProcess struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	lines  chan string
	done   chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (r *faultRig) startRestore(t *testing.T, env []string, extra ...string) *restoreProcess {
	t.Helper()
	args := append([]string{"restore", "--yes", "--gpg-key", r.keyFile, "--from-db", r.source}, extra...)
	cmd := exec.Command(r.bin, append(args, "latest")...)
	cmd.Env = env
	pr, pw := io.Pipe()
	p := &restoreProcess{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, lines: make(chan string, 100), done: make(chan error, 1)}
	cmd.Stdout = p.stdout
	cmd.Stderr = io.MultiWriter(p.stderr, pw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		p.done <- err
	}()
	return p
}

// waitLine waits for a line of stderr containing s.
func (p *restoreProcess) waitLine(t *testing.T, s string, limit time.Duration) {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case l := <-p.lines:
			if strings.Contains(l, s) {
				return
			}
		case err := <-p.done:
			p.done <- err
			t.Fatalf("drconsole ended (%v) before %q:\n%s", err, s, p.stderr.String())
		case <-deadline:
			t.Fatalf("no %q within %s:\n%s", s, limit, p.stderr.String())
		}
	}
}

// exit waits for the process and returns its exit code (-1: killed by a signal).
func (p *restoreProcess) exit(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.done:
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &ee):
			return ee.ExitCode()
		}
		t.Fatalf("wait: %v", err)
	case <-time.After(3 * time.Minute):
		p.cmd.Process.Kill()
		t.Fatalf("drconsole did not end:\n%s", p.stderr.String())
	}
	return 0
}

// waitServer waits until a session of the restore into a scratch database of live runs a
// statement starting with prefix: the server says where the restore is.
func (r *faultRig) waitServer(t *testing.T, p *restoreProcess, live, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, r.c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname LIKE $1 AND state = 'active' AND query ILIKE $2`,
			live+`\_restore\_%`, prefix+"%").Scan(&n); err != nil {
			t.Fatalf("watching the server: %v", err)
		}
		if n > 0 {
			return
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("the restore ended (%v) before the server showed %q:\n%s", err, prefix, p.stderr.String())
		case <-time.After(15 * time.Millisecond):
		}
	}
}

// cutSessions ends every session drconsole has on the server, as a network cut would.
func (r *faultRig) cutSessions(t *testing.T, live string) {
	t.Helper()
	r.c.Exec(t, "postgres", `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND (application_name LIKE 'drconsole%' OR datname LIKE '`+live+`\_restore\_%')`)
}

func TestFaultInjection(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the fault-injection run takes a few minutes")
	}
	r := newFaultRig(t)
	var cases []faultCase
	for _, at := range []string{"stream", "indexes", "checks", "swap-begin", "swap-renamed", "swap-committed"} {
		for _, fault := range []string{"kill", "int", "restart"} {
			cases = append(cases, faultCase{at, fault})
		}
	}
	cases = append(cases, faultCase{"created", "kill"}, faultCase{"swap-renamed", "cut"}, faultCase{"swap-begin", "cut"})
	for _, tc := range cases {
		t.Run(tc.at+"/"+tc.fault, func(t *testing.T) { r.run(t, tc) })
	}
}

func (r *faultRig) run(t *testing.T, tc faultCase) {
	r.n++
	live := fmt.Sprintf("live_%d", r.n)
	r.c.Exec(t, "postgres", "CREATE DATABASE "+live+" TEMPLATE "+r.damaged)
	t.Cleanup(func() {
		for _, d := range r.databasesLike(t, live) {
			r.c.Exec(t, "postgres", `DROP DATABASE "`+d+`" WITH (FORCE)`)
		}
	})
	state := t.TempDir()
	point := tc.at
	if tc.at == "stream" || tc.at == "indexes" {
		point = ""
	}
	p := r.startRestore(t, r.env(live, state, point))
	switch tc.at {
	case "stream":
		r.waitServer(t, p, live, "COPY")
	case "indexes":
		r.waitServer(t, p, live, "CREATE INDEX")
	default:
		p.waitLine(t, "faultpoint "+tc.at+": waiting", 2*time.Minute)
	}
	switch tc.fault {
	case "kill":
		p.cmd.Process.Kill()
	case "int":
		p.cmd.Process.Signal(syscall.SIGINT)
	case "restart":
		r.c.Restart(t)
		if point != "" {
			p.cmd.Process.Signal(syscall.SIGUSR1)
		}
	case "cut":
		r.cutSessions(t, live)
		p.cmd.Process.Signal(syscall.SIGUSR1)
	}
	code := p.exit(t)
	out := p.stderr.String()

	// Right after the fault, before anyone repairs anything: the live name holds the old
	// or the restored data and accepts connections.
	fp, allow := r.liveState(t, live)
	if !allow {
		t.Errorf("%s refuses connections after the fault", live)
	}
	swapped := fp == r.backupFP
	if !swapped && fp != r.damagedFP {
		t.Fatalf("%s holds neither the old nor the restored data after the fault", live)
	}
	// What the process said matches what happened.
	switch {
	case tc.fault == "kill":
	case swapped && code != 0:
		t.Errorf("the swap happened but drconsole exited %d:\n%s", code, out)
	case !swapped && code == 0:
		t.Errorf("the swap did not happen but drconsole exited 0:\n%s", out)
	case tc.fault == "int" && !swapped && code != exitCancelled:
		t.Errorf("interrupted: exit %d, want %d:\n%s", code, exitCancelled, out)
	case tc.fault == "restart" && !swapped && code != exitDatabase:
		t.Errorf("server restarted: exit %d, want %d (the server, not the backup):\n%s", code, exitDatabase, out)
	}
	if !swapped && tc.fault != "kill" && strings.Contains(out, "done: "+live+" is the restored database") {
		t.Errorf("drconsole claims a swap that did not happen:\n%s", out)
	}
	if code != 0 && tc.fault != "kill" {
		last := lastLine(out)
		if !strings.HasPrefix(last, "drconsole restore: ") {
			t.Errorf("the last line is not drconsole's one-line error: %q", last)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left := childrenWith(live + "_restore_")
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("a child of drconsole is still running: %v", left)
			break
		}
	}

	// The next run repairs, finishes the journal's record, announces and drops leftovers.
	leftBefore := r.databasesLike(t, live+"_restore_")
	check := exec.Command(r.bin, "check", "--drop-leftovers", "--json")
	check.Env = r.env(live, state, "")
	cout, err := check.Output()
	if err != nil {
		t.Fatalf("next run (check --drop-leftovers): %v\n%s", err, cout)
	}
	var res checkResult
	if err := json.Unmarshal(cout, &res); err != nil {
		t.Fatalf("check --json: %v\n%s", err, cout)
	}
	for _, d := range leftBefore {
		if !slices.Contains(res.Dropped, d) {
			t.Errorf("scratch %s left by the fault was not announced and dropped by the next run: %+v", d, res)
		}
	}
	if left := r.databasesLike(t, live+"_restore_"); len(left) > 0 {
		t.Errorf("scratch databases remain after the next run: %v", left)
	}
	fp2, allow2 := r.liveState(t, live)
	if fp2 != fp || !allow2 {
		t.Errorf("the next run changed %s (swapped %v→%v, accepts connections %v)", live, swapped, fp2 == r.backupFP, allow2)
	}
	kept := r.databasesLike(t, live+"_pre_restore_")
	if swapped != (len(kept) == 1) {
		t.Errorf("swapped %v but kept copies %v", swapped, kept)
	}
	for _, k := range kept {
		if _, allow := r.liveState(t, k); !allow || faultFingerprint(t, r.c, k) != r.damagedFP {
			t.Errorf("kept copy %s does not hold the old data or refuses connections", k)
		}
	}

	// The journal's last word matches the catalog.
	journals, _ := filepath.Glob(filepath.Join(state, "drconsole", "incidents", "*.jsonl"))
	if len(journals) != 1 {
		t.Fatalf("journals: %v", journals)
	}
	inc, _, err := checklists.ReadJournal(journals[0])
	if err != nil {
		t.Fatal(err)
	}
	rec := inc.Restore()
	if rec == nil {
		t.Fatal("no restore in the journal")
	}
	switch got := rec.State(); {
	case swapped && got != checklists.ResultOK:
		t.Errorf("the swap happened; the journal says %q (%s)", got, rec.Detail)
	case !swapped && got == checklists.ResultOK:
		t.Errorf("the swap did not happen; the journal says ok")
	case !swapped && !slices.Contains([]string{checklists.ResultFailed, checklists.ResultCancelled, checklists.ResultInterrupted, checklists.ResultAbandoned}, got):
		t.Errorf("the journal leaves the restore %q", got)
	}
	if len(inc.Restores) != 1 {
		t.Errorf("the journal counts %d restores for one attempt", len(inc.Restores))
	}
	t.Logf("exit %d, swapped %v, journal %s: %s; next run dropped %v, reconciled %v; drconsole said: %s",
		code, swapped, rec.State(), rec.Detail, res.Dropped, res.Reconciled, lastLine(out))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// childrenWith lists processes whose command line mentions s.
func childrenWith(s string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), s) && !strings.Contains(string(b), "postgres:") {
			out = append(out, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// Two restores of one target from two state directories (two operators, two bastions):
// the second is refused before it touches anything, and the first goes on.
func TestConcurrentRestoresOfOneTarget(t *testing.T) {
	r := newFaultRig(t)
	live := "live_concurrent"
	r.c.Exec(t, "postgres", "CREATE DATABASE "+live+" TEMPLATE "+r.damaged)
	first := r.startRestore(t, r.env(live, t.TempDir(), "checks"))
	first.waitLine(t, "faultpoint checks: waiting", 2*time.Minute)
	second := r.startRestore(t, r.env(live, t.TempDir(), ""))
	if code := second.exit(t); code != exitPreflight {
		t.Errorf("second restore: exit %d, want %d:\n%s", code, exitPreflight, second.stderr.String())
	}
	if out := second.stderr.String(); !strings.Contains(out, "another restore of \""+live+"\" is running") || !strings.Contains(out, "oncall@") {
		t.Errorf("the refusal does not say who holds the target:\n%s", out)
	}
	if scratch := r.databasesLike(t, live+"_restore_"); len(scratch) != 1 {
		t.Errorf("scratch databases while the first restore runs: %v", scratch)
	}
	first.cmd.Process.Signal(syscall.SIGUSR1)
	if code := first.exit(t); code != 0 {
		t.Fatalf("first restore: exit %d:\n%s", code, first.stderr.String())
	}
	if fp, _ := r.liveState(t, live); fp != r.backupFP {
		t.Error("the first restore's swap did not land")
	}
	if kept := r.databasesLike(t, live+"_pre_restore_"); len(kept) != 1 || faultFingerprint(t, r.c, kept[0]) != r.damagedFP {
		t.Errorf("kept: %v (it must hold the original, not another restore)", kept)
	}
}

// A journal that cannot be written (here: the file size limit, as a full disk) stops the
// swap before it happens, says so, and changes the exit code; nothing is changed.
func TestJournalThatCannotBeWrittenStopsTheSwap(t *testing.T) {
	r := newFaultRig(t)
	live := "live_journalfull"
	r.c.Exec(t, "postgres", "CREATE DATABASE "+live+" TEMPLATE "+r.damaged)
	state := t.TempDir()
	p := r.startRestore(t, r.env(live, state, "checks"))
	p.waitLine(t, "faultpoint checks: waiting", 2*time.Minute)
	journals, _ := filepath.Glob(filepath.Join(state, "drconsole", "incidents", "*.jsonl"))
	if len(journals) != 1 {
		t.Fatalf("journals: %v", journals)
	}
	st, err := os.Stat(journals[0])
	if err != nil {
		t.Fatal(err)
	}
	// From now on the process cannot make any file bigger than the journal is.
	limit := unix.Rlimit{Cur: uint64(st.Size()), Max: uint64(st.Size())}
	if err := unix.Prlimit(p.cmd.Process.Pid, unix.RLIMIT_FSIZE, &limit, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	p.cmd.Process.Signal(syscall.SIGUSR1)
	code := p.exit(t)
	out := p.stderr.String()
	if code != exitJournal {
		t.Errorf("exit %d, want %d:\n%s", code, exitJournal, out)
	}
	if !strings.Contains(lastLine(out), "journal") || !strings.Contains(out, "swap not started") {
		t.Errorf("the output does not say the journal failed and the swap did not start:\n%s", out)
	}
	if fp, allow := r.liveState(t, live); fp != r.damagedFP || !allow {
		t.Error("live changed although the swap could not be journaled")
	}
	if left := r.databasesLike(t, live+"_"); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
