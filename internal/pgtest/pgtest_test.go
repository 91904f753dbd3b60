package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestStartExecQuery(t *testing.T) {
	t0 := time.Now()
	c := Start(t)
	t.Logf("cluster started in %v (bin %s, port %d)", time.Since(t0).Round(time.Millisecond), c.BinDir, c.Port)

	c.CreateDB(t, "spywatcher")
	c.Exec(t, "spywatcher", `
		CREATE TABLE "User" (id int PRIMARY KEY, name text, role text);
		INSERT INTO "User" VALUES (1, 'ada', 'ADMIN'), (2, NULL, 'USER');`)
	got := c.Query(t, "spywatcher", `SELECT 1; SELECT id, name, role FROM "User" ORDER BY id`)
	want := [][]string{{"1", "ada", "ADMIN"}, {"2", "", "USER"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Query = %q, want %q", got, want)
	}
	if got := c.Query(t, "spywatcher", `SELECT id FROM "User" WHERE false`); got == nil || len(got) != 0 {
		t.Errorf("Query with no rows = %#v, want an empty, non-nil slice", got)
	}
	if got, want := c.Databases(t), []string{"postgres", "spywatcher"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Databases = %q, want %q", got, want)
	}
}

func TestPasswordIsRequiredOverTCP(t *testing.T) {
	c := Start(t)
	ctx := context.Background()
	bad := strings.Replace(c.URL("postgres"), c.Password, "wrong", 1)
	if conn, err := pgx.Connect(ctx, bad); err == nil {
		conn.Close(ctx)
		t.Fatal("connected with a wrong password")
	}
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
}

func TestClientToolsUseEnv(t *testing.T) {
	c := Start(t)
	c.CreateDB(t, "app")
	c.Exec(t, "app", "CREATE TABLE t (v text); INSERT INTO t VALUES ('x')")
	dump := filepath.Join(t.TempDir(), "app.dump")

	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(filepath.Join(c.BinDir, name), args...)
		cmd.Env = append(os.Environ(), c.Env("app")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
	}
	run("pg_dump", "-Fc", "-f", dump)
	c.CreateDB(t, "copy")
	run("pg_restore", "-d", "copy", dump)
	if got := c.Query(t, "copy", "SELECT v FROM t"); !reflect.DeepEqual(got, [][]string{{"x"}}) {
		t.Errorf("restored rows = %q", got)
	}
}

func TestTwoClustersAreIndependent(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Port == b.Port || a.DataDir == b.DataDir {
		t.Fatalf("clusters share port %d or data dir %s", a.Port, a.DataDir)
	}
	a.CreateDB(t, "only_in_a")
	if got := b.Databases(t); !reflect.DeepEqual(got, []string{"postgres"}) {
		t.Errorf("b.Databases = %q", got)
	}
}

func TestStopThenCleanup(t *testing.T) {
	var c *Cluster
	t.Run("inner", func(t *testing.T) {
		c = Start(t)
		c.Stop(t)
		c.Stop(t) // twice is fine
		if _, err := c.run("postgres", "SELECT 1"); err == nil {
			t.Error("query succeeded on a stopped server")
		}
		if _, err := os.Stat(c.DataDir); err != nil {
			t.Errorf("data dir gone before cleanup: %v", err)
		}
	})
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Errorf("cluster dir %s still there after cleanup: %v", c.dir, err)
	}
}

// helperEnv makes the test binary, run again as a child, act out a misbehaving test.
const helperEnv = "PGTEST_HELPER"

func TestHelperMisbehavingTest(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("run only as a child of TestNoServerOutlivesItsTest")
	}
	c := Start(t)
	fmt.Printf("CLUSTER %d %s\n", postmasterPID(filepath.Join(c.DataDir, "postmaster.pid")), c.dir)
	switch mode {
	case "fatal":
		t.Fatal("failing on purpose")
	case "panic":
		panic("panicking on purpose")
	case "killed":
		time.Sleep(time.Minute) // the parent kills the process meanwhile
	}
}

func TestNoServerOutlivesItsTest(t *testing.T) {
	for _, mode := range []string{"fatal", "panic", "killed"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMisbehavingTest$", "-test.v")
			cmd.Env = append(os.Environ(), helperEnv+"="+mode)
			var out lockedBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var pid int
			var dir string
			deadline := time.Now().Add(time.Minute)
			for pid == 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
				for _, line := range strings.Split(out.String(), "\n") {
					if strings.HasPrefix(line, "CLUSTER ") {
						fmt.Sscanf(line, "CLUSTER %d %s", &pid, &dir)
					}
				}
			}
			if mode == "killed" && pid != 0 {
				cmd.Process.Kill()
			}
			if err := cmd.Wait(); err == nil {
				t.Errorf("child test passed; output:\n%s", out.String())
			}
			if pid == 0 {
				t.Fatalf("child printed no cluster; output:\n%s", out.String())
			}
			if mode == "killed" {
				// No cleanup could run; the next Start of any test binary reaps it.
				if !alive(pid) {
					t.Fatalf("postmaster %d died with its test process; the reaper is untested", pid)
				}
				reapOrphans()
			}
			if !waitExit(pid, 10*time.Second) {
				t.Errorf("postmaster %d still alive", pid)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("cluster dir %s still there: %v", dir, err)
			}
		})
	}
}

func TestShared(t *testing.T) {
	a, b := Shared(t), Shared(t)
	if a != b {
		t.Fatal("Shared returned two clusters")
	}
	x, y := a.NewDB(t), a.NewDB(t)
	if x == y {
		t.Fatalf("NewDB returned %q twice", x)
	}
	a.Exec(t, x, "CREATE TABLE t (i int)")
}

func TestURLEscapesPassword(t *testing.T) {
	c := &Cluster{Host: "127.0.0.1", Port: 5, User: "postgres", Password: "p@ss/w:rd"}
	cfg, err := pgx.ParseConfig(c.URL("db"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Password != c.Password || cfg.Database != "db" || cfg.Port != 5 {
		t.Errorf("URL %s parses to password %q db %q port %d", c.URL("db"), cfg.Password, cfg.Database, cfg.Port)
	}
}

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
