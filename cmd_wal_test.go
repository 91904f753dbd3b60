package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"drconsole/internal/gpgtest"
	"drconsole/internal/pgtest"
	"drconsole/internal/s3test"
	"drconsole/wal"
)

// walCycle is a cluster that archives its WAL through drconsole wal-push into a local
// directory and an S3 bucket, with a base backup taken before batch A, and batch B
// committed after time T1.
type walCycle struct {
	c       *pgtest.Cluster
	srv     *s3test.Server
	dir     string // the cluster's own directory: what the server's account can reach
	cfg     string // drconsole.yaml naming both locations
	archive string // the local location's directory
	wrapper string // drconsole with the test's environment, as the server runs it
	secret  string // the key that decrypts the archive
	t1      string // between the two batches
	lsn1    string // where the WAL was at T1
	last    string // the last segment archived
}

func newWALCycle(t *testing.T) *walCycle {
	t.Helper()
	isolateAWS(t)
	w := &walCycle{c: pgtest.Start(t), srv: s3test.Start(t)}
	w.srv.CreateBucket(t, primaryBucket)
	w.dir = w.c.SocketDir()
	key := gpgtest.NewKey(t, "WAL", "")
	bin := filepath.Join(w.dir, "drconsole")
	copyFile(t, drconsoleBinary(t, ""), bin, 0o755)
	public := filepath.Join(w.dir, "public.asc")
	w.secret = filepath.Join(w.dir, "secret.asc")
	copyFile(t, key.PublicFile, public, 0o644)
	copyFile(t, key.SecretFile, w.secret, 0o600)
	w.archive = filepath.Join(w.dir, "archive")
	if err := os.Mkdir(w.archive, 0o700); err != nil {
		t.Fatal(err)
	}
	w.cfg = filepath.Join(w.dir, "drconsole.yaml")
	writeFile(t, w.cfg, "locations:\n"+dirLocation("local", w.archive)+s3Location("primary", primaryBucket, w.srv.Endpoint), 0o600)
	w.wrapper = filepath.Join(w.dir, "drc")
	writeFile(t, w.wrapper, fmt.Sprintf(`#!/bin/sh
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null HOME=%[1]s XDG_STATE_HOME=%[1]s/state
exec %[2]s --config %[3]s "$@"
`, w.dir, bin, w.cfg), 0o755)
	if err := w.c.GiveToServer(w.dir); err != nil {
		t.Fatal(err)
	}

	for _, s := range []string{"ALTER SYSTEM SET archive_mode = on",
		"ALTER SYSTEM SET archive_command = '" + w.wrapper + " wal-push --gpg-recipient " + public + " %p'"} {
		w.c.Exec(t, "postgres", s)
	}
	w.c.Restart(t)
	w.c.Exec(t, "postgres", `CREATE DATABASE app`)
	w.c.Exec(t, "app", `CREATE TABLE batch (name text, n int)`)

	out, errb, code := runCLI(t, map[string]string{"HOME": w.dir}, "basebackup", "--config", w.cfg, "--db-url", w.c.URL("postgres"), "--gpg-recipient", public)
	if code != 0 || !strings.Contains(out, "stored postgres_base_") {
		t.Fatalf("basebackup: exit %d: %s%s", code, out, errb)
	}
	w.c.Exec(t, "app", `INSERT INTO batch SELECT 'A', g FROM generate_series(1, 1000) g`)
	time.Sleep(200 * time.Millisecond)
	at := w.c.Query(t, "postgres", `SELECT clock_timestamp()::text, pg_current_wal_insert_lsn()::text`)[0]
	w.t1, w.lsn1 = at[0], at[1]
	time.Sleep(200 * time.Millisecond)
	w.c.Exec(t, "app", `INSERT INTO batch SELECT 'B', g FROM generate_series(1, 1000) g`)
	w.c.Query(t, "postgres", `SELECT pg_switch_wal()`)
	w.c.Exec(t, "app", `INSERT INTO batch SELECT 'C', g FROM generate_series(1, 10) g`)
	w.last = w.c.Query(t, "postgres", `SELECT pg_walfile_name(pg_switch_wal())`)[0][0]
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := w.c.Query(t, "postgres", `SELECT coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, '') FROM pg_stat_archiver`)[0]
		if st[0] >= w.last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not archived in a minute: pg_stat_archiver %v; server log:\n%s", w.last, st, tail(filepath.Join(w.dir, "server.log"), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return w
}

// fetch runs wal-fetch in this process, as restore_command would run it.
func (w *walCycle) fetch(t *testing.T, args ...string) (stderr string, code int) {
	t.Helper()
	_, errb, code := runCLI(t, map[string]string{"HOME": w.dir}, append([]string{"wal-fetch", "--config", w.cfg}, args...)...)
	return errb, code
}

// A cluster archives through wal-push into a directory and S3; a server made from a base
// backup recovers through wal-fetch to T1: batch A is there, batch B is not, on a new
// timeline. Then the ways a fetch must refuse, each with its exit code.
func TestWALArchiveRecoversToAPointInTime(t *testing.T) {
	w := newWALCycle(t)

	// Both locations hold every segment, compressed and encrypted under its checksum.
	local, err := os.ReadDir(filepath.Join(w.archive, "wal"))
	if err != nil {
		t.Fatal(err)
	}
	var inS3 []string
	for _, k := range w.srv.Keys(t, primaryBucket) {
		if !strings.HasPrefix(k, "postgres/base/") {
			inS3 = append(inS3, k)
		}
	}
	if len(local) == 0 || len(inS3) != len(local) {
		t.Fatalf("archived: %d files locally, %d in S3", len(local), len(inS3))
	}
	for _, k := range inS3 {
		if !strings.HasPrefix(k, "wal/") || !strings.HasSuffix(k, ".zst.gpg") {
			t.Errorf("S3 key %s is not an encrypted WAL file under wal/", k)
		}
	}

	// wal-status: archiving works, but without archive_timeout the RPO does not hold.
	status := func() (string, string, int) {
		return runCLI(t, map[string]string{"HOME": w.dir}, "wal-status", "--config", w.cfg, "--db-url", w.c.URL("postgres"))
	}
	if out, errb, code := status(); code != 1 || !strings.Contains(errb, "archive_timeout") || !strings.Contains(out, "archive_timeout = 15min") {
		t.Errorf("wal-status without archive_timeout: exit %d, want 1 and the line to set:\n%s%s", code, out, errb)
	}
	w.c.Exec(t, "postgres", `ALTER SYSTEM SET archive_timeout = '5min'`)
	w.c.Exec(t, "postgres", `SELECT pg_reload_conf()`)
	time.Sleep(200 * time.Millisecond)
	out, errb, code := status()
	if code != 0 || !strings.Contains(out, "RPO       1h holds") || strings.Count(out, "newest "+w.last) != 2 {
		t.Errorf("wal-status: exit %d, want 0 with %s newest in both locations:\n%s%s", code, w.last, out, errb)
	}

	// The base backup is in both locations, described beside it.
	if n := len(w.srv.Keys(t, primaryBucket)) - len(inS3); n != 2 {
		t.Errorf("S3 holds %d files under postgres/base/, want the base backup and its description", n)
	}
	if m, _ := filepath.Glob(filepath.Join(w.archive, "base", "postgres_base_*.tar.zst.gpg*")); len(m) != 2 {
		t.Errorf("the directory holds %v under base/, want the base backup and its description", m)
	}

	// check says the same in one line.
	out, errb, code = runCLI(t, map[string]string{"HOME": w.dir, "XDG_STATE_HOME": t.TempDir()}, "check", "--config", w.cfg, "--db-url", w.c.URL("app"))
	if !strings.Contains(out, "WAL archiving: the RPO of 1h holds") {
		t.Errorf("check: exit %d, want the RPO line:\n%s%s", code, out, errb)
	}

	// backups says what point-in-time recovery reaches from each location.
	out, errb, code = runCLI(t, map[string]string{"HOME": w.dir}, "backups", "--config", w.cfg)
	if code != 0 || strings.Count(out, "point in time: ") != 2 || !strings.Contains(out, "local: any moment from") || !strings.Contains(out, "primary: any moment from") {
		t.Errorf("backups: exit %d, want the span of both locations:\n%s%s", code, out, errb)
	}

	// Recover to T1 into a new data directory, as on a fresh DR host: drconsole chooses the
	// base backup, checks the archive, unpacks, starts the server and waits for it.
	pgdata := filepath.Join(w.dir, "recovered")
	port := freeTCPPort(t)
	t.Cleanup(func() { w.c.Command("pg_ctl", "-D", pgdata, "-m", "immediate", "stop").Run() })
	restore := exec.Command(w.wrapper, "restore", "--gpg-key", w.secret, "--to-time", w.t1, "--pgdata", pgdata, "--port", strconv.Itoa(port),
		"--new-incident", "--scenario", "regional-outage")
	restore.Dir = w.dir
	outb, err := restore.CombinedOutput()
	if err != nil || !strings.Contains(string(outb), "recovery stopping before commit") {
		t.Fatalf("restore --to-time: %v:\n%s\n%s", err, outb, tail(pgdata+".log", 3000))
	}
	t.Logf("drconsole restore --to-time:\n%s", outb)
	w.reportSaysPITR(t, string(outb), "the data directory `"+pgdata+"`")
	logFile := pgdata + ".log"
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=app sslmode=disable", w.dir, port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var a, b, tli int
	if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE name = 'A'), count(*) FILTER (WHERE name = 'B'), (SELECT timeline_id FROM pg_control_checkpoint()) FROM batch`).Scan(&a, &b, &tli); err != nil {
		t.Fatal(err)
	}
	if a != 1000 || b != 0 {
		t.Errorf("recovered to %s: %d rows of batch A (want 1000), %d of batch B (want 0)\n%s", w.t1, a, b, tail(logFile, 3000))
	}
	log := tail(logFile, 20000)
	if !strings.Contains(log, "recovery stopping before commit") || !strings.Contains(log, "selected new timeline ID") {
		t.Errorf("the server's log does not say recovery stopped at the target on a new timeline:\n%s", log)
	}
	if tli < 2 {
		t.Errorf("timeline %d after promotion, want a new one", tli)
	}
	// The segments fetched ahead are gone with recovery's end.
	if _, err := os.Stat(filepath.Join(pgdata, "pg_wal", "drconsole-prefetch")); !os.IsNotExist(err) {
		t.Errorf("the prefetch spool is left in pg_wal: %v", err)
	}

	t.Run("prefetch killed", func(t *testing.T) { w.prefetchKilled(t) })
	t.Run("refusals", func(t *testing.T) { w.refusals(t) })
	t.Run("targets refused", func(t *testing.T) { w.targetsRefused(t) })
	t.Run("to a WAL location", func(t *testing.T) { w.toLSN(t) })
	t.Run("into the live database", func(t *testing.T) { w.intoLive(t) })
	t.Run("console", func(t *testing.T) { w.console(t) })
	t.Run("console hang-up", func(t *testing.T) { w.consoleHangUp(t) })
}

// prefetchKilled: the prefetch process is killed -9 as soon as it runs, wherever it is;
// restore_command as drconsole writes it (ln from the spool, else wal-fetch) still gives
// every segment whole, the next fetch starts another prefetch, and the end of recovery
// leaves nothing behind: no spool, no temporary file, no process.
func (w *walCycle) prefetchKilled(t *testing.T) {
	pgwal := filepath.Join(t.TempDir(), "pg_wal")
	os.Mkdir(pgwal, 0o700)
	first := w.c.Query(t, "postgres", `SELECT pg_walfile_name('`+w.lsn1+`'::pg_lsn)`)[0][0]
	restore := func(name string) (string, int) {
		cmd := exec.Command("sh", "-c", wal.RestoreCommand(w.wrapper+" wal-fetch --gpg-key "+w.secret+" --prefetch 3 %f %p"))
		cmd.Dir = filepath.Dir(pgwal) // as the server runs it: in its data directory
		cmd.Args[2] = strings.NewReplacer("%f", name, "%p", "pg_wal/RECOVERYXLOG").Replace(cmd.Args[2])
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), cmd.ProcessState.ExitCode()
		}
		return string(out), 0
	}
	// The prefetch of this pg_wal: its working directory is the data directory.
	prefetches := func() (pids []int) {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			b, err := os.ReadFile(p)
			cwd, _ := os.Readlink(filepath.Join(filepath.Dir(p), "cwd"))
			if err == nil && bytes.Contains(b, []byte("--prefetch-size")) && cwd == filepath.Dir(pgwal) {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				pids = append(pids, pid)
			}
		}
		return pids
	}
	killPrefetch := func() bool {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			for _, pid := range prefetches() {
				if proc, err := os.FindProcess(pid); err == nil && proc.Kill() == nil {
					return true
				}
			}
			time.Sleep(time.Millisecond)
		}
		return false
	}
	seg, _ := strconv.ParseUint(first[16:], 16, 32)
	name, last := first, ""
	killed := 0
	for {
		os.Remove(filepath.Join(pgwal, "RECOVERYXLOG")) // as PostgreSQL does before restore_command
		out, code := restore(name)
		if code == 1 {
			break // the end of the archive
		}
		if code != 0 {
			t.Fatalf("restore_command for %s: exit %d: %s", name, code, out)
		}
		if st, err := os.Stat(filepath.Join(pgwal, "RECOVERYXLOG")); err != nil || st.Size() != 16<<20 {
			t.Fatalf("%s restored: %v %v, want a whole segment", name, st, err)
		}
		// PostgreSQL keeps a restored segment under its own name.
		os.Rename(filepath.Join(pgwal, "RECOVERYXLOG"), filepath.Join(pgwal, name))
		if killed < 2 && killPrefetch() {
			killed++
		}
		last = name
		seg++
		name = fmt.Sprintf("%s%08X", first[:16], seg)
	}
	if name <= w.last || killed == 0 {
		t.Fatalf("restored up to %s (the archive ends at %s), %d prefetch processes killed", name, w.last, killed)
	}
	// As recovery ends: the last segment read again, the next timeline looked for.
	if out, code := restore(last); code != 0 {
		t.Fatalf("%s read again at the end: exit %d: %s", last, code, out)
	}
	if out, code := restore("00000002.history"); code != 1 {
		t.Fatalf("the next timeline's history: exit %d, want 1: %s", code, out)
	}
	time.Sleep(200 * time.Millisecond)
	left, _ := os.ReadDir(pgwal)
	for _, e := range left {
		if n := e.Name(); n != "RECOVERYXLOG" && (len(n) != 24 || strings.Trim(n, "0123456789ABCDEF") != "") {
			t.Errorf("left in pg_wal after the end of recovery: %s", e.Name())
		}
	}
	if pids := prefetches(); len(pids) > 0 {
		t.Errorf("a prefetch still runs after the end of the archive: pids %v", pids)
	}
}

// startConsole runs the console at 80×24 in tmux on the archiving cluster's app, its
// state in state and its temporary clusters under work.
func (w *walCycle) startConsole(t *testing.T, state, work string) *tmuxSession {
	t.Helper()
	os.Mkdir(work, 0o755)
	s := &tmuxSession{t: t, name: "drconsole", sock: filepath.Join(t.TempDir(), "tmux.sock")}
	cmdline := "exec env NO_COLOR=1 TERM=xterm-256color USER=alice TMPDIR=" + work + " " + w.wrapper + " --state-dir=" + state +
		" --db-url='" + w.c.URL("app") + "' --gpg-key=" + w.secret
	s.tmux("new-session", "-d", "-s", s.name, "-x", "80", "-y", "24", cmdline)
	t.Cleanup(func() { exec.Command("tmux", "-S", s.sock, "kill-server").Run() })
	return s
}

// A hang-up while the console recovers a point in time: the temporary cluster is stopped
// and removed, the live database is as it was, and the journal says the recovery was
// cancelled and why.
func (w *walCycle) consoleHangUp(t *testing.T) {
	requireTmux(t)
	before := w.c.Query(t, "app", `SELECT count(*)::text FROM batch`)[0][0]
	state := filepath.Join(w.dir, "state-hangup")
	work := filepath.Join(w.dir, "work-hangup")
	s := w.startConsole(t, state, work)
	s.openRestoreStep("Start a new incident")
	s.waitFor("t: a point in time instead", 5*time.Second)
	s.keys("t")
	s.waitFor("recover to (UTC):", 15*time.Second)
	s.keys("C-u")
	s.typeText(w.t1)
	s.keys("Enter")
	s.waitFor("type app to start:", 15*time.Second)
	s.typeText("app")
	s.keys("Enter")
	s.waitFor("[starting]", 30*time.Second)
	s.tmux("kill-session", "-t", s.name) // SIGHUP, as a dropped SSH session

	// drconsole cleans up and exits: no process of its, nor of its temporary cluster.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var left []string
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if b, err := os.ReadFile(p); err == nil && (strings.Contains(string(b), state) || strings.Contains(string(b), work+"/")) {
				left = append(left, strings.ReplaceAll(string(b), "\x00", " "))
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute after the hang-up, still running: %v", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Errorf("the temporary cluster is left in %s: %v", work, left)
	}
	if got := w.c.Query(t, "app", `SELECT count(*)::text FROM batch`)[0][0]; got != before {
		t.Errorf("app has %s rows after the hang-up, %s before", got, before)
	}
	journals, _ := filepath.Glob(filepath.Join(state, "incidents", "*.jsonl"))
	if len(journals) != 1 {
		t.Fatalf("journals: %v", journals)
	}
	md, errb, code := runCLI(t, nil, "report", journals[0])
	for _, want := range []string{"## Point in time", "- Result: **cancelled**", "hung up"} {
		if code != 0 || !strings.Contains(md, want) {
			t.Errorf("the report lacks %q (exit %d %s):\n%s", want, code, errb, md)
		}
	}
}

// The console recovers the live database to T1 by keystrokes alone, at 80×24: the restore
// step's point in time, a typo and a time before the base backup refused in a line, the
// plan, the typed name, the replay's phases as they pass, then the ordinary checks and
// swap. Batch A is back, batch B and the damage are not, and the report says so.
func (w *walCycle) console(t *testing.T) {
	requireTmux(t)
	// The damage: A's rows gone, rows that never existed at T1 added.
	w.c.Exec(t, "app", `DELETE FROM batch WHERE name = 'A'; INSERT INTO batch SELECT 'X', g FROM generate_series(1, 5) g`)
	state := filepath.Join(w.dir, "state-console")
	work := filepath.Join(w.dir, "work-console") // TMPDIR: the server's account must reach it
	s := w.startConsole(t, state, work)
	s.openRestoreStep("Start a new incident")
	s.waitFor("t: a point in time instead", 5*time.Second)
	s.keys("t")
	s.waitFor("recover to (UTC):", 15*time.Second)
	s.keys("C-u")
	s.typeText("2026-11-3O 10:00")
	s.keys("Enter")
	s.waitFor(`"2026-11-3O 10:00" is not a time`, 5*time.Second)
	t1, err := parseTarget(w.t1)
	if err != nil {
		t.Fatal(err)
	}
	s.keys("C-u")
	s.typeText(t1.Add(-time.Hour).UTC().Format("2006-01-02 15:04:05"))
	s.keys("Enter")
	s.waitFor("is before every base backup", 15*time.Second)
	s.keys("C-u")
	s.typeText(w.t1)
	s.keys("Enter")
	plan := s.waitFor("type app to start:", 15*time.Second)
	t.Logf("the plan:\n%s", plan)
	for _, want := range []string{"base backup postgres_base_", " segments, 0000000100000000000000", "RPO ", "within the scenario's 1h RPO"} {
		if !strings.Contains(plan, want) {
			t.Errorf("the plan lacks %q", want)
		}
	}
	s.typeText("app")
	s.keys("Enter")

	// What the screen shows as the recovery goes, until the safe restore takes over.
	var phases []string
	var shown []string
	deadline := time.Now().Add(90 * time.Second)
	for {
		sc := s.screen()
		if strings.Contains(sc, "All blocking checks passed") || strings.Contains(sc, "✗") {
			shown = append(shown, sc)
			break
		}
		for _, l := range strings.Split(sc, "\n") {
			if strings.HasPrefix(l, "Phase ✓") || strings.HasPrefix(l, "Phase [") {
				ph := l[strings.Index(l, "[")+1 : strings.Index(l, "]")]
				if len(phases) == 0 || phases[len(phases)-1] != ph {
					phases = append(phases, ph)
					shown = append(shown, sc)
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checks screen in 90s; phases seen %v; the screen:\n%s", phases, sc)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("phases seen: %v; the screens:\n%s", phases, strings.Join(shown, "\n----\n"))
	last := shown[len(shown)-1]
	if !strings.Contains(last, "All blocking checks passed") {
		t.Fatalf("after the recovery, not the checks screen:\n%s", strings.Join(shown, "\n----\n"))
	}
	if len(phases) < 2 || phases[0] != "unpacking" && phases[0] != "starting" {
		t.Errorf("phases seen %v: want the recovery's phases in order, from unpacking", phases)
	}
	replayShown := false
	for _, sc := range shown {
		replayShown = replayShown || strings.Contains(sc, "WAL segments fetched") && strings.Contains(sc, "Target      "+t1.UTC().Format("2006-01-02 15:04:05"))
	}
	if !replayShown {
		t.Errorf("the recovery's screen never showed segments fetched and the target:\n%s", strings.Join(shown, "\n----\n"))
	}
	s.keys("s")
	s.waitFor("to swap:", 5*time.Second)
	s.typeText("app")
	s.keys("Enter")
	s.waitFor("Post-recovery checklist", 30*time.Second)
	s.keys("q")

	got := w.c.Query(t, "app", `SELECT count(*) FILTER (WHERE name = 'A'), count(*) FILTER (WHERE name = 'B'), count(*) FILTER (WHERE name = 'X') FROM batch`)[0]
	if got[0] != "1000" || got[1] != "0" || got[2] != "0" {
		t.Errorf("app after the console's recovery to T1: A=%s B=%s X=%s, want 1000, 0, 0", got[0], got[1], got[2])
	}
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Errorf("the temporary cluster or the dump is left in %s: %v", work, left)
	}
	journals, _ := filepath.Glob(filepath.Join(state, "incidents", "*.jsonl"))
	if len(journals) != 1 {
		t.Fatalf("journals: %v", journals)
	}
	w.reportSaysPITR(t, "journal: "+journals[0]+"\n", "the database `app`, through the restore below")
}

// reportSaysPITR reads the report of the incident a restore --to-time recorded in (its
// "journal:" line) and checks that it states the target, the base backup, the WAL range,
// the timelines, the recovery point and the RPO achieved, in Markdown and JSON.
func (w *walCycle) reportSaysPITR(t *testing.T, out, into string) {
	t.Helper()
	var journal string
	for _, l := range strings.Split(out, "\n") {
		if p, ok := strings.CutPrefix(l, "journal: "); ok {
			journal = strings.TrimSpace(p)
		}
	}
	if journal == "" {
		t.Fatalf("the restore names no incident journal:\n%s", out)
	}
	t1, err := parseTarget(w.t1)
	if err != nil {
		t.Fatal(err)
	}
	md, errb, code := runCLI(t, nil, "report", journal)
	if code != 0 {
		t.Fatalf("report %s: exit %d: %s", journal, code, errb)
	}
	for _, want := range []string{
		"## Point in time",
		"- Result: ok",
		"- Target: " + t1.UTC().Format("2006-01-02 15:04:05.999999") + " UTC",
		"- Base backup: `postgres_base_",
		"- WAL: `000000010000000000000",
		"- Timeline: followed 1, promoted to 2",
		"- Recovery point: " + t1.UTC().Format("2006-01-02 "),
		"(the server: recovery stopping before commit",
		"- RPO achieved: ",
		"against the scenario's 1h: met",
		"- Into: " + into,
		"(incident start minus the recovery point) | met |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
	js, errb, code := runCLI(t, nil, "report", "--json", journal)
	var r struct {
		PointInTime *struct {
			TargetTime    time.Time  `json:"target_time"`
			BaseBackup    string     `json:"base_backup"`
			FirstSegment  string     `json:"first_segment"`
			LastSegment   string     `json:"last_segment"`
			Timeline      int        `json:"timeline"`
			NewTimeline   int        `json:"new_timeline"`
			RecoveryPoint *time.Time `json:"recovery_point"`
			RPO           *float64   `json:"rpo_achieved_minutes"`
		} `json:"point_in_time"`
		RPO *float64 `json:"rpo_achieved_minutes"`
	}
	if code != 0 || json.Unmarshal([]byte(js), &r) != nil || r.PointInTime == nil {
		t.Fatalf("report --json %s: exit %d, no point_in_time: %s%s", journal, code, js, errb)
	}
	p := r.PointInTime
	if !p.TargetTime.Equal(t1) || !strings.HasPrefix(p.BaseBackup, "postgres_base_") || p.FirstSegment == "" || p.LastSegment < p.FirstSegment ||
		p.Timeline != 1 || p.NewTimeline != 2 || p.RecoveryPoint == nil || p.RecoveryPoint.After(t1) || p.RPO == nil || r.RPO == nil || *r.RPO != *p.RPO || *p.RPO < 0 || *p.RPO > 10 {
		t.Errorf("report --json's point_in_time: %s", js)
	}
}

// --to-lsn stops just after a WAL location: the one the server was at between A and B.
func (w *walCycle) toLSN(t *testing.T) {
	pgdata := filepath.Join(w.dir, "recovered-lsn")
	port := freeTCPPort(t)
	t.Cleanup(func() { w.c.Command("pg_ctl", "-D", pgdata, "-m", "immediate", "stop").Run() })
	restore := exec.Command(w.wrapper, "restore", "--gpg-key", w.secret, "--to-lsn", w.lsn1, "--pgdata", pgdata, "--port", strconv.Itoa(port))
	out, err := restore.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "recover to WAL location "+w.lsn1) || !strings.Contains(string(out), "recovery stopping after WAL location") {
		t.Fatalf("restore --to-lsn %s: %v:\n%s\n%s", w.lsn1, err, out, tail(pgdata+".log", 2000))
	}
	got := queryAt(t, w.dir, port, "app", `SELECT count(*) FILTER (WHERE name = 'A') || ' ' || count(*) FILTER (WHERE name = 'B') FROM batch`)
	if got != "1000 0" {
		t.Errorf("recovered to %s: A and B rows %s, want 1000 0", w.lsn1, got)
	}
}

func queryAt(t *testing.T, host string, port int, db, sql string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", host, port, db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// Without --pgdata the database goes back into the running server the way any backup
// does: recovered in a temporary cluster, dumped, restored into a scratch database,
// checked, swapped in, the damaged one kept, and the temporary cluster gone.
func (w *walCycle) intoLive(t *testing.T) {
	state := filepath.Join(w.dir, "state-live")
	restore := exec.Command(w.wrapper, "restore", "--yes", "--gpg-key", w.secret, "--to-time", w.t1, "--db-url", w.c.URL("app"), "--new-incident", "--scenario", "ransomware")
	restore.Env = append(os.Environ(), "XDG_STATE_HOME="+state)
	work := filepath.Join(w.dir, "work") // the server's account must reach it; t.TempDir() is root's
	os.Mkdir(work, 0o755)
	restore.Args = append(restore.Args, "--work-dir", work)

	// First a run killed while its temporary cluster recovers: the cluster keeps running
	// and fills the disk until the next run removes it.
	killed := exec.Command(w.wrapper, "restore", "--yes", "--gpg-key", w.secret, "--to-time", w.t1, "--db-url", w.c.URL("app"), "--work-dir", work)
	killed.Env = restore.Env
	stderr, _ := killed.StderrPipe()
	killed.Stdout = io.Discard
	if err := killed.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "starting the server on") {
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	killed.Process.Kill()
	killed.Wait()
	left, _ := filepath.Glob(filepath.Join(work, "drconsole-pitr-*"))
	if len(left) != 1 {
		t.Fatalf("after kill -9 mid-recovery: %v in the work directory, want the temporary cluster", left)
	}

	out, err := restore.CombinedOutput()
	t.Logf("drconsole restore --to-time into the live database:\n%s", out)
	if err != nil {
		t.Fatalf("restore --to-time into app: %v", err)
	}
	got := w.c.Query(t, "app", `SELECT count(*) FILTER (WHERE name = 'A'), count(*) FILTER (WHERE name = 'B'), count(*) FILTER (WHERE name = 'C') FROM batch`)[0]
	if got[0] != "1000" || got[1] != "0" || got[2] != "0" {
		t.Errorf("app after the recovery to T1: A=%s B=%s C=%s, want 1000, 0, 0", got[0], got[1], got[2])
	}
	kept := false
	for _, d := range w.c.Databases(t) {
		kept = kept || strings.HasPrefix(d, "app_pre_restore_")
	}
	if !kept || !strings.Contains(string(out), "kept as app_pre_restore_") {
		t.Errorf("the damaged app is not kept")
	}
	w.reportSaysPITR(t, string(out), "the database `app`, through the restore below")
	if !strings.Contains(string(out), "removed "+left[0]+", the temporary cluster of a run that died") {
		t.Errorf("the next run did not say it removed the killed run's cluster %s", left[0])
	}
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Errorf("the temporary cluster is left in %s: %v", work, left)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), left[0]) {
			t.Errorf("a process of the killed run's temporary cluster still runs: %s", strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}

// Targets no base backup and archive can reach are refused before anything is written,
// with the times that can be reached.
func (w *walCycle) targetsRefused(t *testing.T) {
	pgdata := filepath.Join(t.TempDir(), "pgdata")
	restore := func(args ...string) (string, int) {
		_, errb, code := runCLI(t, map[string]string{"HOME": w.dir}, append([]string{"restore", "--config", w.cfg, "--gpg-key", w.secret, "--pgdata", pgdata}, args...)...)
		return errb, code
	}
	t1, err := parseTarget(w.t1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what, target, says string
	}{
		{"before every base backup", t1.Add(-time.Hour).Format("2006-01-02 15:04:05"), "is before every base backup"},
		{"after the last archived segment", time.Now().UTC().Add(-time.Second).Format("2006-01-02 15:04:05"), "choose an earlier time"},
	} {
		if errb, code := restore("--to-time", c.target); code != exitPreflight || !strings.Contains(errb, c.says) {
			t.Errorf("%s: exit %d, want %d saying %q: %s", c.what, code, exitPreflight, c.says, errb)
		}
	}
	// A missing segment between the backup and the target, later ones archived.
	segs, _ := filepath.Glob(filepath.Join(w.archive, "wal", "0000000*-*"))
	var names []string
	for _, p := range segs {
		if b := filepath.Base(p); len(b) > 24 && b[24] == '-' {
			names = append(names, p)
		}
	}
	last := names[len(names)-2] // the one holding T1; the last one holds batch C
	os.Rename(last, last+".hidden")
	defer os.Rename(last+".hidden", last)
	hole := filepath.Join(t.TempDir(), "hole.yaml")
	writeFile(t, hole, "locations:\n"+dirLocation("local", w.archive), 0o600)
	_, errb, code := runCLI(t, map[string]string{"HOME": w.dir}, "restore", "--config", hole, "--gpg-key", w.secret, "--pgdata", pgdata, "--to-time", w.t1)
	if code != exitPreflight || !strings.Contains(errb, "lacks "+filepath.Base(last)[:24]) {
		t.Errorf("a target past a missing segment: exit %d, want %d naming %s: %s", code, exitPreflight, filepath.Base(last)[:24], errb)
	}
	if _, err := os.Stat(pgdata); !os.IsNotExist(err) {
		t.Errorf("a refused recovery made %s", pgdata)
	}
	// Not into a directory that holds anything.
	os.MkdirAll(pgdata, 0o700)
	os.WriteFile(filepath.Join(pgdata, "PG_VERSION"), []byte("15\n"), 0o600)
	if errb, code := restore("--to-time", w.t1); code != exitPreflight || !strings.Contains(errb, "not empty") {
		t.Errorf("recovery into a directory in use: exit %d: %s", code, errb)
	}
	if errb, code := restore("--to-time", "yesterday"); code != exitUsage {
		t.Errorf("--to-time yesterday: exit %d, want %d: %s", code, exitUsage, errb)
	}
}

func (w *walCycle) refusals(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	seg := w.last
	stored := func(name string) string {
		t.Helper()
		m, _ := filepath.Glob(filepath.Join(w.archive, "wal", name+"-*"))
		if len(m) != 1 {
			t.Fatalf("%s archived locally as %v", name, m)
		}
		return m[0]
	}

	// A segment after the last one: the end of the WAL, exit 1.
	next := fmt.Sprintf("%s%08X", w.last[:16], mustHex(t, w.last[16:])+1)
	if errb, code := w.fetch(t, "--gpg-key", w.secret, next, dest); code != 1 {
		t.Errorf("fetch of %s, after the last segment: exit %d, want 1: %s", next, code, errb)
	}
	// The last one: served, whole, by the first location.
	if errb, code := w.fetch(t, "--gpg-key", w.secret, seg, dest); code != 0 {
		t.Fatalf("fetch of %s: exit %d: %s", seg, code, errb)
	}
	if st, err := os.Stat(dest); err != nil || st.Size() != 16<<20 {
		t.Fatalf("fetched segment: %v %v", st, err)
	}
	// No key, a wrong key: stop (126), never "not found".
	if errb, code := w.fetch(t, seg, dest); code != 126 || !strings.Contains(errb, "key") {
		t.Errorf("fetch without a key: exit %d, want 126: %s", code, errb)
	}
	other := gpgtest.NewKey(t, "Other", "")
	if errb, code := w.fetch(t, "--gpg-key", other.SecretFile, seg, dest); code != 126 {
		t.Errorf("fetch with another key: exit %d, want 126: %s", code, errb)
	}
	// A bad command line must not end recovery either.
	if errb, code := w.fetch(t, "--frobnicate", seg, dest); code != 126 {
		t.Errorf("fetch with a bad flag: exit %d, want 126: %s", code, errb)
	}

	// A damaged local copy: S3 serves, and says so.
	damaged := stored(seg)
	orig, err := os.ReadFile(damaged)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), orig...)
	bad[len(bad)/2] ^= 0xff
	writeFile(t, damaged, string(bad), 0o600)
	errb, code := w.fetch(t, "--gpg-key", w.secret, seg, dest)
	if code != 0 || !strings.Contains(errb, "served by primary") || !strings.Contains(errb, "local") {
		t.Errorf("fetch with a damaged local copy: exit %d, want 0 from primary, said aloud: %s", code, errb)
	}
	// Only the damaged copy: stop.
	if errb, code := w.fetch(t, "--location", "local", "--gpg-key", w.secret, seg, dest); code != 126 || !strings.Contains(errb, "damaged") {
		t.Errorf("fetch of a damaged copy only: exit %d, want 126: %s", code, errb)
	}
	writeFile(t, damaged, string(orig), 0o600)

	// A missing middle segment, with later ones archived: a hole, stop.
	var segs []string
	all, _ := filepath.Glob(filepath.Join(w.archive, "wal", "0000000*-*"))
	for _, p := range all {
		if b := filepath.Base(p); len(b) > 24 && b[24] == '-' {
			segs = append(segs, p)
		}
	}
	if len(segs) < 3 {
		t.Fatalf("too few segments archived to make a hole: %v", segs)
	}
	middle := segs[len(segs)-2]
	hidden := middle + ".hidden"
	os.Rename(middle, hidden)
	name := filepath.Base(middle)[:24]
	if errb, code := w.fetch(t, "--location", "local", "--gpg-key", w.secret, name, dest); code != 126 || !strings.Contains(errb, "hole") {
		t.Errorf("fetch of a missing middle segment: exit %d, want 126 (a hole): %s", code, errb)
	}
	os.Rename(hidden, middle)

	// The primary unreachable: the local copy serves, said aloud; what neither holds
	// cannot be called the end of the WAL.
	down := filepath.Join(t.TempDir(), "down.yaml")
	writeFile(t, down, "locations:\n"+s3Location("primary", primaryBucket, "http://127.0.0.1:1")+dirLocation("local", w.archive), 0o600)
	_, errb, code = runCLI(t, map[string]string{"HOME": w.dir}, "wal-fetch", "--config", down, "--gpg-key", w.secret, seg, dest)
	if code != 0 || !strings.Contains(errb, "served by local") || !strings.Contains(errb, "primary") {
		t.Errorf("fetch with the primary down: exit %d, want 0 from local, said aloud: %s", code, errb)
	}
	_, errb, code = runCLI(t, map[string]string{"HOME": w.dir}, "wal-fetch", "--config", down, "--gpg-key", w.secret, next, dest)
	if code != 126 || !strings.Contains(errb, "--location") {
		t.Errorf("fetch of a segment nobody has, the primary down: exit %d, want 126: %s", code, errb)
	}

	// An archive another tool wrote: a raw segment and a gzipped one, read by content.
	rawDir := filepath.Join(t.TempDir(), "raw")
	os.MkdirAll(filepath.Join(rawDir, "wal"), 0o700)
	want, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(rawDir, "wal", seg), string(want), 0o600)
	rawCfg := filepath.Join(t.TempDir(), "raw.yaml")
	writeFile(t, rawCfg, "locations:\n"+dirLocation("old", rawDir), 0o600)
	dest2 := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	if _, errb, code := runCLI(t, nil, "wal-fetch", "--config", rawCfg, seg, dest2); code != 0 {
		t.Errorf("fetch of a raw segment: exit %d: %s", code, errb)
	} else if got, _ := os.ReadFile(dest2); string(got) != string(want) {
		t.Errorf("the raw segment fetched differs")
	}
	os.Remove(filepath.Join(rawDir, "wal", seg))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(want)
	zw.Close()
	writeFile(t, filepath.Join(rawDir, "wal", seg+".gz"), gz.String(), 0o600)
	if _, errb, code := runCLI(t, nil, "wal-fetch", "--config", rawCfg, seg, dest2); code != 0 {
		t.Errorf("fetch of a gzipped segment: exit %d: %s", code, errb)
	} else if got, _ := os.ReadFile(dest2); string(got) != string(want) {
		t.Errorf("the gzipped segment fetched differs")
	}

	// Pushing the same segment again succeeds; a different file under its name does not.
	if _, errb, code := runCLI(t, map[string]string{"HOME": w.dir}, "wal-push", "--config", w.cfg, dest2); code == 0 {
		t.Errorf("wal-push of a file named RECOVERYXLOG: exit 0, want a refusal: %s", errb)
	}
	again := filepath.Join(t.TempDir(), seg)
	writeFile(t, again, string(want), 0o600)
	if out, errb, code := runCLI(t, map[string]string{"HOME": w.dir}, "wal-push", "--config", w.cfg, "--json", again); code != 0 || !strings.Contains(out, `"already": true`) {
		t.Errorf("wal-push of an archived segment again: exit %d: %s %s", code, out, errb)
	}
	want[100] ^= 0xff
	writeFile(t, again, string(want), 0o600)
	if _, errb, code := runCLI(t, map[string]string{"HOME": w.dir}, "wal-push", "--config", w.cfg, again); code == 0 || !strings.Contains(errb, "different content") {
		t.Errorf("wal-push of another file under an archived name: exit %d: %s", code, errb)
	}
}

func mustHex(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

// tail is the end of a file, for failure messages.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// freeTCPPort is a port nothing listens on now.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
