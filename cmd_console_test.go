package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"drconsole/checklists"
	"drconsole/internal/gpgtest"
	"drconsole/internal/pgtest"
)

const consoleSchema = `
CREATE TYPE "Role" AS ENUM ('USER', 'ADMIN');
CREATE TABLE "User" (id serial PRIMARY KEY, username text NOT NULL, role "Role" NOT NULL DEFAULT 'USER');
CREATE TABLE "Guild" (id serial PRIMARY KEY, name text NOT NULL, "ownerId" int REFERENCES "User"(id));
CREATE TABLE "ApiKey" (id serial PRIMARY KEY, "userId" int REFERENCES "User"(id), key text NOT NULL);
CREATE TABLE "Session" (id text PRIMARY KEY, "userId" int REFERENCES "User"(id));
INSERT INTO "User" (username, role) SELECT 'user ' || g, CASE WHEN g % 10 = 0 THEN 'ADMIN'::"Role" ELSE 'USER' END FROM generate_series(1, 200) g;
INSERT INTO "Guild" (name, "ownerId") SELECT 'guild ' || g, 1 + g % 200 FROM generate_series(1, 50) g;
INSERT INTO "ApiKey" ("userId", key) SELECT 1 + g % 200, md5(g::text) FROM generate_series(1, 80) g;
INSERT INTO "Session" VALUES ('s1', 1);
`

// tmuxSession drives the console in a real terminal of 80×24.
type tmuxSession struct {
	t    *testing.T
	name string
	sock string
	bin  string // the drconsole binary it runs
}

// requireTmux fails in CI, where .ci/run installs tmux, and skips elsewhere without it.
func requireTmux(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tmux not installed: .ci/run installs it; in CI this test must run")
		}
		t.Skip("tmux not installed (apt-get install tmux)")
	}
}

// builds are the drconsole binaries the tests run as processes, built once per test
// binary each: the product, and (tag "faultpoints") the build with fault points.
var builds struct {
	sync.Mutex
	paths map[string]string
}

// drconsoleBinary builds drconsole with the given build tags ("" for none), once.
func drconsoleBinary(t *testing.T, tags string) string {
	t.Helper()
	builds.Lock()
	defer builds.Unlock()
	if p, ok := builds.paths[tags]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "drconsole-bin")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "drconsole")
	if out, err := exec.Command("go", "build", "-tags", tags, "-o", path, ".").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("go build -tags %q: %v: %s", tags, err, out)
	}
	if builds.paths == nil {
		builds.paths = map[string]string{}
	}
	builds.paths[tags] = path
	return path
}

// removeBuilds deletes the binaries when the test binary ends (TestMain).
func removeBuilds() {
	for _, p := range builds.paths {
		os.RemoveAll(filepath.Dir(p))
	}
}

// startConsole runs drconsole, built once per test binary, as the only process of a tmux
// window of 80×24, so closing the window hangs it up as a dropped SSH session does.
func startConsole(t *testing.T, c *pgtest.Cluster, db, backupDir, state, keyFile string) *tmuxSession {
	t.Helper()
	s := &tmuxSession{t: t, name: "drconsole", sock: filepath.Join(t.TempDir(), "tmux.sock"), bin: drconsoleBinary(t, "")}
	env := []string{"NO_COLOR=1", "TERM=xterm-256color", "USER=alice", "BACKUP_DIR=" + backupDir, "XDG_CONFIG_HOME=" + state, "S3_BUCKET=", "S3_BUCKET_SECONDARY="}
	cmdline := "exec env " + strings.Join(env, " ") + " " + s.bin + " --state-dir=" + state + " --db-url='" + c.URL(db) + "' --gpg-key=" + keyFile
	s.tmux("new-session", "-d", "-s", s.name, "-x", "80", "-y", "24", cmdline)
	t.Cleanup(func() { exec.Command("tmux", "-S", s.sock, "kill-server").Run() })
	return s
}

// openRestoreStep waits for start (the start screen's choice), starts an incident of
// database corruption with it and opens step 4, the restore.
func (s *tmuxSession) openRestoreStep(start string) {
	s.t.Helper()
	s.waitFor(start, 10*time.Second)
	s.keys("Enter")
	s.waitFor("Which scenario is this?", 5*time.Second)
	s.keys("Enter")
	s.waitFor("Escalation level 1 now", 5*time.Second)
	s.keys("Down", "Down", "Down", "Enter")
	s.waitFor("Step 4. Restore Database", 5*time.Second)
}

// chooseBackup starts a real incident of database corruption, opens step 4 and picks the
// backup called name.
func (s *tmuxSession) chooseBackup(name string) {
	s.t.Helper()
	s.openRestoreStep("Start a new incident")
	s.keys("Enter")
	s.waitFor(name[:30], 10*time.Second)
	s.keys("Enter")
}

func (s *tmuxSession) tmux(args ...string) string {
	s.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", s.sock}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %v: %v: %s", args, err, out)
	}
	return string(out)
}

func (s *tmuxSession) screen() string { return s.tmux("capture-pane", "-p", "-t", s.name) }

func (s *tmuxSession) keys(keys ...string) {
	s.t.Helper()
	for _, k := range keys {
		s.tmux("send-keys", "-t", s.name, k)
		time.Sleep(60 * time.Millisecond)
	}
}

func (s *tmuxSession) typeText(text string) {
	s.t.Helper()
	s.tmux("send-keys", "-t", s.name, "-l", text)
	time.Sleep(100 * time.Millisecond)
}

// waitFor waits until the screen shows want and returns the screen.
func (s *tmuxSession) waitFor(want string, timeout time.Duration) string {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	var screen string
	for time.Now().Before(deadline) {
		screen = s.screen()
		if strings.Contains(screen, want) {
			return screen
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("the screen never showed %q; it shows:\n%s", want, screen)
	return ""
}

// jobBackup makes a backup of db in dir as the backup job does — pg_dump -Fc (with
// dumpArgs), gzip when gz, gpg --encrypt to key — named as taken ten minutes ago, and
// returns its name.
func jobBackup(t *testing.T, c *pgtest.Cluster, db, dir string, key *gpgtest.Key, gz bool, dumpArgs ...string) string {
	t.Helper()
	raw := filepath.Join(dir, "raw.dump")
	dump := exec.Command(filepath.Join(c.BinDir, "pg_dump"), append(append([]string{"-Fc"}, dumpArgs...), "-f", raw, db)...)
	dump.Env = append(os.Environ(), c.Env(db)...)
	if out, err := dump.CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v: %s", err, out)
	}
	name := "spywatcher_full_" + time.Now().UTC().Add(-10*time.Minute).Format("20060102_150405") + ".dump"
	if gz {
		if out, err := exec.Command("gzip", "-1", raw).CombinedOutput(); err != nil {
			t.Fatalf("gzip: %v: %s", err, out)
		}
		raw, name = raw+".gz", name+".gz"
	}
	name += ".gpg"
	key.Encrypt(t, raw, filepath.Join(dir, name))
	os.Remove(raw)
	return name
}

// TestConsoleRecoversCorruptDatabase builds drconsole, runs it in tmux at 80×24 against
// a throwaway cluster, and recovers a damaged database by keystrokes alone: scenario,
// restore step, backup, passphrase, typed confirmation, progress, checks, swap,
// checklist, close.
func TestConsoleRecoversCorruptDatabase(t *testing.T) {
	requireTmux(t)
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	c.Exec(t, db, consoleSchema)
	key := gpgtest.NewKey(t, "Ops", "correct horse")
	dir, state := t.TempDir(), t.TempDir()

	name := jobBackup(t, c, db, dir, key, true, "-b")

	// The corruption.
	c.Exec(t, db, `DELETE FROM "ApiKey"; DELETE FROM "Session"; UPDATE "User" SET username = 'garbage'`)

	s := startConsole(t, c, db, dir, state, key.SecretFile)
	s.chooseBackup(name)
	s.waitFor("passphrase:", 15*time.Second)
	s.typeText("correct horse")
	s.keys("Enter")
	s.waitFor("Type the database name", 15*time.Second)
	s.typeText(db)
	s.keys("Enter")
	checks := s.waitFor("All blocking checks passed", 60*time.Second)
	t.Logf("checks screen:\n%s", checks)
	s.keys("s")
	s.waitFor("to swap:", 5*time.Second)
	s.keys("y", "Enter") // y is not the database's name: nothing happens
	s.waitFor("That is not", 5*time.Second)
	s.keys("BSpace")
	s.typeText(db)
	s.keys("Enter")
	s.waitFor("Post-recovery checklist", 30*time.Second)
	for range 11 {
		s.keys("Space")
	}
	s.waitFor("11 of 11 ticked", 5*time.Second)
	s.keys("x")
	s.waitFor("Close the incident", 5*time.Second)
	s.keys("Enter")
	s.waitFor("cannot be reopened", 5*time.Second)
	s.keys("y")
	closed := s.waitFor("Report written to", 10*time.Second)
	t.Logf("close screen:\n%s", closed)
	s.keys("q")

	// The live database is the backup's data again; the damaged one is kept.
	if got := c.Query(t, db, `SELECT count(*) FROM "ApiKey"`)[0][0]; got != "80" {
		t.Errorf("ApiKey rows after the recovery: %s, want 80", got)
	}
	if got := c.Query(t, db, `SELECT count(*) FROM "User" WHERE username = 'garbage'`)[0][0]; got != "0" {
		t.Errorf("damaged users after the recovery: %s, want 0", got)
	}
	kept := false
	for _, d := range c.Databases(t) {
		if strings.HasPrefix(d, db[:20]) && strings.Contains(d, "_pre_restore_") {
			kept = true
			c.Exec(t, "postgres", `DROP DATABASE "`+d+`" WITH (FORCE)`)
		}
	}
	if !kept {
		t.Error("the damaged database was not kept")
	}
	reports, _ := filepath.Glob(filepath.Join(state, "incidents", "*.report.md"))
	if len(reports) != 1 {
		t.Fatalf("reports written: %v", reports)
	}
	data, _ := os.ReadFile(reports[0])
	for _, want := range []string{"Database Corruption", name, "recovered"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
}

// TestConsoleHangUpDuringRestoreCleansUp drops the terminal (tmux kill-session sends
// SIGHUP, as a dropped SSH session does) while a restore streams: drconsole records the
// hang-up, cancels the restore, drops the scratch database, leaves the live database as it
// was and the incident open, and exits.
func TestConsoleHangUpDuringRestoreCleansUp(t *testing.T) {
	requireTmux(t)
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	c.Exec(t, db, consoleSchema+`
CREATE TABLE "Event" (id bigserial PRIMARY KEY, payload text, at timestamptz DEFAULT now());
INSERT INTO "Event" (payload) SELECT md5(g::text) || repeat('x', 100) FROM generate_series(1, 600000) g;
CREATE INDEX ON "Event" (payload);
CREATE INDEX ON "Event" (at, payload);`)
	key := gpgtest.NewKey(t, "Ops", "")
	dir, state := t.TempDir(), t.TempDir()
	name := jobBackup(t, c, db, dir, key, true, "-Z0")
	c.Exec(t, db, `DELETE FROM "ApiKey"`)
	live := c.Query(t, db, `SELECT count(*) || ':' || (SELECT count(*) FROM "Event") FROM "ApiKey"`)[0][0]

	s := startConsole(t, c, db, dir, state, key.SecretFile)
	s.chooseBackup(name)
	s.waitFor("Type the database name", 15*time.Second)
	s.typeText(db)
	s.keys("Enter")
	s.waitFor("Restoring", 10*time.Second)
	time.Sleep(500 * time.Millisecond) // well inside the stream

	scratch := func() []string {
		var out []string
		for _, d := range c.Databases(t) {
			if strings.Contains(d, "_restore_") && strings.HasPrefix(d, db[:20]) {
				out = append(out, d)
			}
		}
		return out
	}
	if len(scratch()) == 0 {
		t.Fatal("no scratch database while the restore runs: the restore finished too soon to test a hang-up")
	}
	s.tmux("kill-session", "-t", s.name) // SIGHUP to drconsole

	// drconsole exits and leaves nothing behind.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if exec.Command("pgrep", "-f", s.bin).Run() != nil && len(scratch()) == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if exec.Command("pgrep", "-f", s.bin).Run() == nil {
		t.Error("drconsole still runs a minute after the hang-up")
	}
	if left := scratch(); len(left) > 0 {
		t.Errorf("scratch database left after the hang-up: %v", left)
	}
	if exec.Command("pgrep", "-f", "pg_restore.*"+db[:20]).Run() == nil {
		t.Error("pg_restore still runs after the hang-up")
	}
	if got := c.Query(t, db, `SELECT count(*) || ':' || (SELECT count(*) FROM "Event") FROM "ApiKey"`)[0][0]; got != live {
		t.Errorf("live database changed by a hung-up restore: %s, was %s", got, live)
	}
	journals, _ := filepath.Glob(filepath.Join(state, "incidents", "*.jsonl"))
	if len(journals) != 1 {
		t.Fatalf("journals: %v", journals)
	}
	data, _ := os.ReadFile(journals[0])
	if !strings.Contains(string(data), `"session"`) || !strings.Contains(string(data), "hung up") {
		t.Errorf("the journal does not record the hang-up:\n%s", data)
	}
	if strings.Contains(string(data), `"incident_closed"`) {
		t.Error("a hang-up closed the incident; it must stay open to be resumed")
	}
	if !strings.Contains(string(data), `"restore_finished"`) || !strings.Contains(string(data), `"cancelled"`) {
		t.Errorf("the journal does not record the restore as cancelled:\n%s", data)
	}
}

// TestConsoleAfterKillFindsWhatWasLeft kills the console with SIGKILL while a restored copy
// waits for its swap, then starts it again: the start screen lists the scratch copy left on
// the server, drops it after y/n, and resuming the incident finishes the interrupted
// restore's record from the server's state.
func TestConsoleAfterKillFindsWhatWasLeft(t *testing.T) {
	requireTmux(t)
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	c.Exec(t, db, consoleSchema)
	key := gpgtest.NewKey(t, "Ops", "")
	dir, state := t.TempDir(), t.TempDir()
	name := jobBackup(t, c, db, dir, key, false)
	c.Exec(t, db, `DELETE FROM "ApiKey"`)
	live := c.Query(t, db, `SELECT count(*) FROM "ApiKey"`)[0][0]

	s := startConsole(t, c, db, dir, state, key.SecretFile)
	s.chooseBackup(name)
	s.waitFor("Type the database name", 15*time.Second)
	s.typeText(db)
	s.keys("Enter")
	s.waitFor("All blocking checks passed", 60*time.Second)
	pid := strings.TrimSpace(s.tmux("display-message", "-p", "-t", s.name, "#{pane_pid}"))
	if out, err := exec.Command("kill", "-9", pid).CombinedOutput(); err != nil {
		t.Fatalf("kill -9 %s: %v %s", pid, err, out)
	}
	var scratch []string
	for _, d := range c.Databases(t) {
		if strings.HasPrefix(d, db+"_restore_") {
			scratch = append(scratch, d)
		}
	}
	if len(scratch) != 1 {
		t.Fatalf("scratch databases after kill -9: %v", scratch)
	}

	s = startConsole(t, c, db, dir, state, key.SecretFile)
	start := s.waitFor("Left on the server", 15*time.Second)
	if !strings.Contains(start, "1 scratch copy") || !strings.Contains(start, "l lists") {
		t.Errorf("start screen:\n%s", start)
	}
	s.keys("l")
	s.waitFor(scratch[0], 5*time.Second)
	s.keys("d")
	s.waitFor("(y/n)", 5*time.Second)
	s.keys("y")
	s.waitFor("Nothing: no scratch or kept copies are left", 15*time.Second)
	s.keys("Escape")
	// Back on the start screen, its summary is the look after the drop, not before.
	if back := s.waitFor("Resume incident", 5*time.Second); strings.Contains(back, "Left on the server") {
		t.Errorf("the start screen still lists what was dropped:\n%s", back)
	}
	s.keys("Enter")
	resumed := s.waitFor("an interrupted restore of", 15*time.Second) // the start screen speaks of "interrupted restores" too
	t.Logf("resumed:\n%s", resumed)
	s.keys("q")

	if got := c.Query(t, db, `SELECT count(*) FROM "ApiKey"`)[0][0]; got != live {
		t.Errorf("live database changed: %s rows, was %s", got, live)
	}
	for _, d := range c.Databases(t) {
		if strings.HasPrefix(d, db+"_restore_") {
			t.Errorf("scratch left: %s", d)
		}
	}
	journals, _ := filepath.Glob(filepath.Join(state, "incidents", "*.jsonl"))
	if len(journals) != 1 {
		t.Fatalf("journals: %v", journals)
	}
	inc, _, err := checklists.ReadJournal(journals[0])
	if err != nil {
		t.Fatal(err)
	}
	if r := inc.Restore(); r == nil || r.State() != checklists.ResultInterrupted || len(inc.Restores) != 1 {
		t.Errorf("the journal's restores: %+v", inc.Restores)
	}
	if !strings.Contains(journalText(inc), "dropped "+scratch[0]) {
		t.Errorf("the drop is not in the journal")
	}
}

func journalText(inc *checklists.Incident) string {
	var b strings.Builder
	for _, n := range inc.Notes {
		b.WriteString(n.Text + "\n")
	}
	return b.String()
}
