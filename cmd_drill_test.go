package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"drconsole/internal/pgtest"
)

// A drill builds its sandbox from nothing but this machine's PostgreSQL binaries, and
// never reaches what the environment names as production: a server given by DB_* and
// PG* settings here, which must be left exactly as it was.
func TestDrillSandboxTouchesNothingOutside(t *testing.T) {
	prod := pgtest.Shared(t)
	before := strings.Join(prod.Databases(t), ",")
	bin := drconsoleBinary(t, "")
	state := t.TempDir()
	for _, scenario := range []string{"database-corruption", "regional-outage"} {
		t.Run(scenario, func(t *testing.T) {
			cmd := exec.Command(bin, "drill", "--no-console", "--scenario", scenario, "--seed", "7")
			cmd.Env = append(os.Environ(), "DB_HOST="+prod.Host, "DB_PORT="+strconv.Itoa(prod.Port), "DB_USER="+prod.User, "DB_PASSWORD="+prod.Password,
				"DB_NAME=spywatcher", "PGHOST="+prod.Host, "PGPORT="+strconv.Itoa(prod.Port), "PGPASSWORD="+prod.Password, "XDG_STATE_HOME="+state,
				"BACKUP_DIR="+t.TempDir())
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("drill: %v\n%s", err, out)
			}
			m := regexp.MustCompile(`remove it with: drconsole drill --remove (\S+)`).FindSubmatch(out)
			if m == nil {
				t.Fatalf("drill did not say where its sandbox is:\n%s", out)
			}
			dir := string(m[1])
			defer func() {
				if out, err := exec.Command(bin, "drill", "--remove", dir).CombinedOutput(); err != nil {
					t.Errorf("drill --remove: %v: %s", err, out)
				}
				if _, err := os.Stat(dir); !os.IsNotExist(err) {
					t.Errorf("the sandbox %s is still there", dir)
				}
			}()
			text := string(out)
			for _, want := range []string{"fault     ", "answer    restore spywatcher_"} {
				if !strings.Contains(text, want) {
					t.Errorf("drill output lacks %q:\n%s", want, text)
				}
			}
			// A week of encrypted backups in both locations (the primary unreachable in a
			// regional outage), readable with the drill key and signed by it.
			primary, _ := filepath.Glob(filepath.Join(dir, "backups", "primary", "spywatcher_*.dump.gz.gpg"))
			secondary, _ := filepath.Glob(filepath.Join(dir, "backups", "secondary", "spywatcher_*.dump.gz.gpg"))
			// Seven dailies and the last day's incrementals so far: how many depends on the hour.
			said := regexp.MustCompile(`backups   (\d+) in primary and secondary`).FindStringSubmatch(text)
			n := 0
			if said != nil {
				n, _ = strconv.Atoi(said[1])
			}
			wantPrimary := n
			if scenario == "regional-outage" {
				wantPrimary = 0
			}
			if n < 7 || n > 10 || len(primary) != wantPrimary || len(secondary) != n {
				t.Errorf("backups: %d said, %d in primary (want %d), %d in secondary\n%s", n, len(primary), wantPrimary, len(secondary), text)
			}
			verify := exec.Command(bin, "verify", "--config", filepath.Join(dir, "drconsole.yaml"), "--gpg-key", filepath.Join(dir, "drill-secret.asc"), "--json", "latest")
			verify.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "DB_NAME=spywatcher"}
			if vout, err := verify.CombinedOutput(); err != nil || !strings.Contains(string(vout), `"complete": true`) || !strings.Contains(string(vout), `"trusted": true`) {
				t.Errorf("verify latest in the sandbox: %v\n%s", err, vout)
			}
			// The fault is real: the sandbox's database has lost users the answer has.
			port := regexp.MustCompile(`port (\d+), database`).FindStringSubmatch(text)
			want := regexp.MustCompile(`public\.User (\d+)`).FindStringSubmatch(text)
			if port == nil || want == nil {
				t.Fatalf("drill output lacks the port or the answer:\n%s", text)
			}
			psql := exec.Command(filepath.Join(prod.BinDir, "psql"), "-X", "-A", "-t", "-h", dir, "-p", port[1], "-U", "postgres", "-d", "spywatcher", "-c", `SELECT count(*) FROM "User"`)
			psql.Env = []string{"PATH=" + os.Getenv("PATH")}
			got, err := psql.CombinedOutput()
			if n, _ := strconv.Atoi(strings.TrimSpace(string(got))); err != nil || n == 0 || strconv.Itoa(n) == want[1] {
				t.Errorf("the sandbox's \"User\" rows after the fault: %s (%v), the clean backup's: %s", got, err, want[1])
			}
			if after := strings.Join(prod.Databases(t), ","); after != before {
				t.Errorf("the drill changed the production server's databases:\n before %s\n after  %s", before, after)
			}
			if entries, _ := os.ReadDir(state); len(entries) != 0 {
				t.Errorf("the drill wrote into this machine's state directory: %v", entries)
			}
		})
	}
}

// A sandbox whose drill died (kill -9, a crash) is found and removed by the next drill; a
// kept one is not.
func TestDrillRemovesASandboxLeftByADeadDrill(t *testing.T) {
	bin := drconsoleBinary(t, "")
	// The server's account must reach the sandbox: not under t.TempDir(), which is root's.
	parent, err := os.MkdirTemp("", "drill-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(parent, 0o755)
	t.Cleanup(func() { os.RemoveAll(parent) })
	build := func() (string, string) {
		t.Helper()
		out, err := exec.Command(bin, "drill", "--no-console", "--seed", "3", "--dir", parent).CombinedOutput()
		if err != nil {
			t.Fatalf("drill: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`remove it with: drconsole drill --remove (\S+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("drill did not say where its sandbox is:\n%s", out)
		}
		return string(m[1]), string(out)
	}
	orphan, _ := build()
	// As if its drill had been killed: not kept, and its process gone.
	dead := exec.Command("true")
	dead.Run()
	os.Remove(filepath.Join(orphan, "kept"))
	os.WriteFile(filepath.Join(orphan, "drconsole.pid"), []byte(strconv.Itoa(dead.ProcessState.Pid())), 0o644)
	kept, out := build()
	defer exec.Command(bin, "drill", "--remove", kept).Run()
	if !strings.Contains(out, "removed "+orphan+", left by a drill that died") {
		t.Errorf("the second drill did not say it removed the first's sandbox:\n%s", out)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("the dead drill's sandbox %s is still there", orphan)
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("the kept sandbox is gone: %v", err)
	}
}

// Every scenario's drill passes when recovered automatically, in its sandbox, with the
// right backup; a ransomware drill that restores an infected backup fails, saying so.
func TestDrillAutoScoresEveryScenario(t *testing.T) {
	bin := drconsoleBinary(t, "")
	state := t.TempDir()
	drill := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"drill", "--auto", "--seed", "11"}, args...)...)
		cmd.Env = append(os.Environ(), "DB_HOST=203.0.113.1", "PGHOST=203.0.113.1", "XDG_STATE_HOME="+state) // production: never reached
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, scenario := range []string{"database-corruption", "infrastructure-failure", "regional-outage", "ransomware"} {
		t.Run(scenario, func(t *testing.T) {
			t.Parallel()
			out, err := drill("--scenario", scenario)
			if err != nil || !strings.Contains(out, "score     PASS") || strings.Contains(out, "WRONG") {
				t.Errorf("drill --auto --scenario %s: %v\n%s", scenario, err, out)
			}
			if m := regexp.MustCompile(`automatic recovery in (\S+)`).FindStringSubmatch(out); m == nil {
				t.Errorf("no sandbox named:\n%s", out)
			} else if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
				t.Errorf("the sandbox %s is left", m[1])
			}
		})
	}
	t.Run("ransomware, an infected backup restored", func(t *testing.T) {
		t.Parallel()
		// The newest backup of a ransomware drill was taken after the attack.
		out, err := drill("--scenario", "ransomware", "--backup", "newest")
		if err == nil || !strings.Contains(out, "score     FAIL") || !strings.Contains(out, "INFECTED") || !strings.Contains(out, "WRONG") {
			t.Errorf("an infected backup restored is not scored a failure: %v\n%s", err, out)
		}
	})
	t.Run("ransomware, to a point in time before the attack", func(t *testing.T) {
		t.Parallel()
		// The sandbox archives its WAL from a base backup taken before the week's data: a
		// recovery to just before the attack brings back what the database held then,
		// with an RPO no dump can give.
		out, err := drill("--scenario", "ransomware", "--pitr")
		for _, want := range []string{"backup    point in time: ", "before the fault began", "each table against the data just before the fault", "target 1h: met", "score     PASS"} {
			if !strings.Contains(out, want) {
				t.Errorf("drill --auto --pitr lacks %q: %v\n%s", want, err, out)
			}
		}
		if err != nil || strings.Contains(out, "WRONG") {
			t.Errorf("drill --auto --pitr: %v\n%s", err, out)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		// Each scorecard is kept for the quarterly review, and report --drills shows them.
		cmd := exec.Command(bin, "report", "--drills")
		cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+state)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.Count(string(out), "| auto |") != 6 || !strings.Contains(string(out), "| Ransomware Attack | 3 | 2 |") || !strings.Contains(string(out), "restored an infected backup") {
			t.Errorf("report --drills: %v\n%s", err, out)
		}
	})
}

// A drill takes nothing from this machine's configuration but the notify channels marked
// for drills, and the secrets those name.
func TestDrillCarriesOnlyDrillChannels(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "drconsole.yaml")
	writeFile(t, cfg, `locations:
  - name: prod
    path: /var/backups/prod
notify:
  - name: drill-chat
    type: slack
    url_env: DRILL_HOOK
    drills: true
  - name: prod-pager
    type: pagerduty
    routing_key_env: PROD_KEY
`, 0o600)
	env := map[string]string{"DRILL_HOOK": "https://hooks.example/drill", "PROD_KEY": "secret-prod-key"}
	a := &app{configPath: cfg, getenv: func(k string) string { return env[k] }}
	extra, pass, _, err := drillChannels(a)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(extra, "drill-chat") || strings.Contains(extra, "prod-pager") || strings.Contains(extra, "/var/backups/prod") {
		t.Errorf("the drill's configuration gets:\n%s", extra)
	}
	if pass["DRILL_HOOK"] != env["DRILL_HOOK"] || pass["PROD_KEY"] != "" || len(pass) != 1 {
		t.Errorf("variables passed into the drill: %v", pass)
	}
}

// A new engineer's drill, driven by keystrokes in a real terminal of 80×24: start it, run
// a psql command (it runs, in the sandbox) and a shell one (recorded only), restore the
// right backup, swap it in, tick the checklist and close; the console then shows the
// scored report, the same is printed when it exits, exit 0, the sandbox is gone and the
// scorecard is kept for report --drills.
func TestDrillInTheConsoleToItsScoredReport(t *testing.T) {
	requireTmux(t)
	bin := drconsoleBinary(t, "")
	state := t.TempDir()
	s, scr, sandbox := startDrillInTmux(t, bin, "drill", "drill --seed 3", "XDG_STATE_HOME="+state, "PGHOST=203.0.113.1", "DB_HOST=203.0.113.1")
	alert := regexp.MustCompile(`alert: the first sign of trouble was seen at (\S+ \S+) UTC`).FindStringSubmatch(scr)
	if alert == nil {
		t.Fatalf("the start screen does not say when the first sign of trouble was seen:\n%s", scr)
	}
	s.keys("Enter")
	s.waitFor("Which scenario is this?", 5*time.Second)
	s.keys("Enter")
	s.waitFor("Escalation level 1 now", 5*time.Second)
	s.keys("Enter")
	s.waitFor("Step 1. Assess the Damage", 5*time.Second)
	// The statistics query runs, in the sandbox; the log's tail is only recorded.
	s.keys("Down", "Down", "r")
	s.waitFor("Run this command in the sandbox now? (y/n)", 5*time.Second)
	s.keys("y")
	s.waitFor("(1 row)", 10*time.Second)
	s.keys("Up", "r")
	s.waitFor("Record (drill: dry run) this command now?", 5*time.Second)
	s.keys("y")
	s.waitFor("recorded, not run (in a drill only psql against the sandbox runs)", 5*time.Second)
	s.keys("d")
	s.waitFor("done, note (optional)", 5*time.Second)
	s.keys("Enter")
	s.waitFor("done 0m", 5*time.Second)
	s.keys("Down", "Down", "Down", "Enter")
	s.waitFor("Step 4. Restore Database", 5*time.Second)
	// The point in time is offered at the first sign of trouble, inside the sandbox's
	// archive: it plans (the incident's start, past the fault, would be refused).
	s.keys("t")
	scr = s.waitFor("recover to (UTC): "+alert[1], 10*time.Second)
	if !strings.Contains(scr, "The first sign of trouble was seen at "+alert[1]+" UTC.") {
		t.Errorf("the point in time does not say when the first sign of trouble was seen:\n%s", scr)
	}
	s.keys("Enter")
	s.waitFor("type spywatcher to start", 30*time.Second)
	s.keys("Escape")
	s.waitFor("recover to (UTC): ", 5*time.Second)
	s.keys("Escape")
	s.waitFor("Step 4. Restore Database", 5*time.Second)
	s.keys("Enter")
	s.waitFor("Choose the backup to restore", 10*time.Second)
	for range 12 { // the newest backup (full or incremental, by the hour) is the clean one
		s.keys("Up")
	}
	s.waitFor("> 20", 2*time.Second)
	s.keys("Enter")
	s.waitFor("type spywatcher to start", 15*time.Second)
	s.typeText("spywatcher")
	s.keys("Enter")
	scr = s.waitFor("All blocking checks passed: s swaps it in", 60*time.Second)
	if !strings.Contains(scr, "every row as in the archive") {
		t.Errorf("the checks screen does not account for the rows:\n%s", scr)
	}
	s.keys("s")
	s.waitFor("type spywatcher to swap", 5*time.Second)
	s.typeText("spywatcher")
	s.keys("Enter")
	s.waitFor("Post-recovery checklist  0 of 11 ticked", 30*time.Second)
	for i := 1; i <= 11; i++ { // a tick moves to the next item
		s.keys("Space")
		s.waitFor(fmt.Sprintf("Post-recovery checklist  %d of 11 ticked", i), 5*time.Second)
	}
	s.keys("x")
	s.waitFor("Outcome: [drill complete]", 5*time.Second)
	s.keys("Enter")
	s.waitFor("This cannot be reopened. (y/n)", 5*time.Second)
	s.keys("y")
	scr = s.waitFor(": the right one", 30*time.Second)
	closed := scr
	for _, want := range []string{"Database Corruption (console, small, seed 3)", "closed    as drill complete", "step       1 done", "step       4 done", ": the right one", "RTO", "to the swap, of 2h: met"} {
		if !strings.Contains(scr, want) {
			t.Errorf("the scored report in the console lacks %q:\n%s", want, scr)
		}
	}
	s.keys("q")
	s.waitFor("EXIT=", 60*time.Second)
	out := s.tmux("capture-pane", "-p", "-J", "-t", s.name, "-S", "-200")
	for _, want := range []string{"answer    restore spywatcher_", "  right   public.User", "  right   public.Event", "score     PASS: the data is right and the RTO met", "EXIT=0",
		`"User" rows deleted (`, "and by cascade their "} {
		if !strings.Contains(out, want) {
			t.Errorf("the drill's last words lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "WRONG") || strings.Contains(out, "mistake") {
		t.Errorf("a right recovery is scored with mistakes:\n%s", out)
	}
	if _, err := os.Stat(sandbox); !os.IsNotExist(err) {
		t.Errorf("the sandbox %s is left after the drill", sandbox)
	}
	cards, _ := filepath.Glob(filepath.Join(state, "drconsole", "drills", "*-database-corruption-console.json"))
	mds, _ := filepath.Glob(filepath.Join(state, "drconsole", "drills", "*-database-corruption-console.md"))
	if len(cards) != 1 || len(mds) != 1 {
		t.Fatalf("the scorecard is not kept: %v %v", cards, mds)
	}
	// The close screen showed the report that lasts, whole: not the sandbox's, which is
	// gone, and its name never broken or cut.
	if strings.Contains(closed, sandbox) || !strings.Contains(closed, filepath.Base(mds[0])) || !strings.Contains(closed, "report    ") {
		t.Errorf("the close screen does not show the report kept (%s):\n%s", mds[0], closed)
	}
	for _, l := range strings.Split(strings.TrimRight(closed, "\n"), "\n") {
		if l = strings.TrimRight(l, " "); strings.HasSuffix(l, "…") && !strings.Contains(l, "q quit") {
			t.Errorf("a line of the close screen is cut: %q", l)
		}
	}
	md, _ := os.ReadFile(mds[0])
	for _, want := range []string{"score     PASS", "# Drill report: Database Corruption", "Restore Database"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("the kept report lacks %q:\n%s", want, md)
		}
	}
}

// A terminal that hangs up during a sandbox drill ends the drill: its sandbox goes, so
// drconsole says there is nothing to resume and where the scorecard is kept, and not
// "resume it". At 80×24 the regional outage's steps fit, step 7's untimed words under them.
func TestDrillHangUpEndsTheDrill(t *testing.T) {
	requireTmux(t)
	bin := drconsoleBinary(t, "")
	state := t.TempDir()
	s, scr, sandbox := startDrillInTmux(t, bin, "drill-hup", "drill --seed 5 --scenario regional-outage", "XDG_STATE_HOME="+state)
	s.keys("Enter")
	s.waitFor("Which scenario is this?", 5*time.Second)
	s.keys("Enter")
	scr = s.waitFor("7.  Plan for Failback", 5*time.Second)
	if !regexp.MustCompile(`7\.  Plan for Failback +untimed  pending\n`).MatchString(scr) || !strings.Contains(scr, "7. untimed: When primary region recovers") {
		t.Errorf("the regional outage's step 7 does not fit at 80×24:\n%s", scr)
	}
	for _, l := range strings.Split(scr, "\n") {
		if l = strings.TrimRight(l, " "); strings.HasSuffix(l, "…") && !strings.Contains(l, "? all keys") {
			t.Errorf("a line of the scenario view is cut: %q", l)
		}
	}

	// The terminal goes away, as a dropped SSH session's does.
	pane := strings.TrimSpace(s.tmux("display-message", "-p", "-t", s.name, "#{pane_pid}"))
	child, err := exec.Command("pgrep", "-P", pane, "-f", bin).Output()
	pid, _ := strconv.Atoi(strings.TrimSpace(string(child)))
	if err != nil || pid == 0 {
		t.Fatalf("drconsole's process under the pane %s: %v %q", pane, err, child)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.waitFor("EXIT=", 60*time.Second)
	out := s.tmux("capture-pane", "-p", "-J", "-t", s.name, "-S", "-200")
	cards, _ := filepath.Glob(filepath.Join(state, "drconsole", "drills", "*-regional-outage-console.json"))
	if len(cards) != 1 {
		t.Fatalf("no scorecard kept: %v\n%s", cards, out)
	}
	want := "drconsole drill: cancelled: the terminal hung up; the drill ended and its sandbox is removed with it: there is nothing to resume; its scorecard is kept at " + cards[0]
	if !strings.Contains(out, want) || !strings.Contains(out, "EXIT=130") {
		t.Errorf("the hang-up is not said as what happened (want %q):\n%s", want, out)
	}
	if strings.Contains(out, "resume it") {
		t.Errorf("a hung-up sandbox drill offers to resume it:\n%s", out)
	}
	if _, err := os.Stat(sandbox); !os.IsNotExist(err) {
		t.Errorf("the sandbox %s is left after the hang-up", sandbox)
	}
}

// startDrillInTmux runs drconsole ARGS (a sandbox drill) at 80×24 in tmux session name,
// with env added to a plain terminal's, and waits for its start screen: the session, that
// screen and the sandbox's directory (its server's, as the screen names it).
func startDrillInTmux(t *testing.T, bin, name, args string, env ...string) (*tmuxSession, string, string) {
	t.Helper()
	s := &tmuxSession{t: t, name: name, sock: filepath.Join(t.TempDir(), "tmux.sock"), bin: bin}
	env = append([]string{"NO_COLOR=1", "TERM=xterm-256color", "USER=trainee"}, env...)
	s.tmux("new-session", "-d", "-s", s.name, "-x", "80", "-y", "24", "env "+strings.Join(env, " ")+" "+bin+" "+args+"; echo EXIT=$?; sleep 120")
	t.Cleanup(func() { exec.Command("tmux", "-S", s.sock, "kill-server").Run() })
	scr := s.waitFor("Start the drill (in the sandbox", 60*time.Second)
	m := regexp.MustCompile(`server: (/\S+) \(socket`).FindStringSubmatch(scr)
	if m == nil {
		t.Fatalf("the start screen does not name the sandbox's server:\n%s", scr)
	}
	return s, scr, m[1]
}
