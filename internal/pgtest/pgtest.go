// Package pgtest starts real, throwaway PostgreSQL clusters for tests: one per test
// (Start) or one per test binary (Shared). Every cluster is stopped and deleted afterwards.
//
// A package that calls
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// may use Shared, and its Start calls copy one initdb'd template instead of running
// initdb each time (about 0.7 s a cluster instead of 1.5 s).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a running PostgreSQL server that belongs to the test that started it.
// Connect over TCP with User and Password (scram-sha-256); the unix socket in the
// cluster's directory accepts any local user without a password.
type Cluster struct {
	Host     string // "127.0.0.1"
	Port     int
	User     string // superuser, "postgres"
	Password string // the superuser's password
	BinDir   string // where initdb, pg_ctl, pg_dump, pg_restore and psql were found
	DataDir  string

	dir   string     // root of the cluster's files: data, socket, log, owner file
	owner *osAccount // the OS account the server runs as; nil: the current one

	mu      sync.Mutex
	stopped bool
	removed bool
}

// Start starts a fresh, independent cluster and registers t.Cleanup to stop it and
// delete its files, whether the test passes, fails or panics. Without PostgreSQL
// binaries the test is skipped, or fails when CI=true.
func Start(t testing.TB) *Cluster {
	t.Helper()
	c, err := start()
	if err != nil {
		failOrSkip(t, err)
	}
	t.Cleanup(func() {
		if err := c.destroy(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return c
}

// SocketDir is the directory of the server's unix socket: use it as PGHOST (or host=
// in a URL) to test peer/trust connections without a password.
func (c *Cluster) SocketDir() string { return c.dir }

// URL returns a connection URL for database db over TCP with password authentication.
func (c *Cluster) URL(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(c.User, c.Password),
		Host:     net.JoinHostPort(c.Host, strconv.Itoa(c.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Env returns the libpq environment for database db, to append to os.Environ() for
// pg_dump, pg_restore, psql or drconsole itself.
func (c *Cluster) Env(db string) []string {
	return []string{
		"PGHOST=" + c.Host,
		"PGPORT=" + strconv.Itoa(c.Port),
		"PGUSER=" + c.User,
		"PGPASSWORD=" + c.Password,
		"PGDATABASE=" + db,
		"PGSSLMODE=disable",
	}
}

// Exec runs sql (several statements separated by semicolons are fine) in database db
// as the superuser, and fails the test on any error.
func (c *Cluster) Exec(t testing.TB, db, sql string) {
	t.Helper()
	if _, err := c.run(db, sql); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// Query runs sql in database db and returns the rows of its last statement that
// returns rows, every value as PostgreSQL's text form; NULL becomes "" (as in psql).
func (c *Cluster) Query(t testing.TB, db, sql string) [][]string {
	t.Helper()
	rows, err := c.run(db, sql)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return rows
}

// CreateDB creates database name (owned by the superuser).
func (c *Cluster) CreateDB(t testing.TB, name string) {
	t.Helper()
	c.Exec(t, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

var dbSeq atomic.Int64

// NewDB creates a database with a name unique in this test binary, derived from the
// test's name, and returns the name. Use it on a Shared cluster.
func (c *Cluster) NewDB(t testing.TB) string {
	t.Helper()
	base := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "_"))
	if len(base) > 40 {
		base = base[:40]
	}
	name := fmt.Sprintf("%s_%d", strings.Trim(base, "_"), dbSeq.Add(1))
	c.CreateDB(t, name)
	return name
}

// Databases lists the cluster's databases, sorted, without the templates.
func (c *Cluster) Databases(t testing.TB) []string {
	t.Helper()
	var names []string
	for _, row := range c.Query(t, "postgres", "SELECT datname FROM pg_database WHERE NOT datistemplate") {
		names = append(names, row[0])
	}
	sort.Strings(names)
	return names
}

// Stop stops the server now (immediate shutdown), to test what happens when the
// server is down. Its files stay until the test ends. Stopping twice is fine.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.stop(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// Restart crashes and restarts the server (immediate shutdown: every session is cut and
// every open transaction lost, as in a crash or a failover of the host), and waits until
// it accepts connections again.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		t.Fatalf("pgtest: restart a stopped cluster")
	}
	if err := c.runTool("pg_ctl", "-D", c.DataDir, "-w", "-t", "60", "-m", "immediate", "-l", c.logPath(), "restart"); err != nil {
		t.Fatalf("pgtest: restart: %v\nserver log:\n%s", err, c.logTail())
	}
}

// run executes sql over the simple protocol so several statements may be sent at once
// and every value comes back as text.
func (c *Cluster) run(db, sql string) ([][]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL(db))
	if err != nil {
		return nil, fmt.Errorf("connect to database %q on port %d: %w", db, c.Port, err)
	}
	defer conn.Close(context.Background())
	var rows [][]string
	mrr := conn.PgConn().Exec(ctx, sql)
	for mrr.NextResult() {
		rr := mrr.ResultReader()
		var result [][]string
		for rr.NextRow() {
			row := make([]string, len(rr.Values()))
			for i, v := range rr.Values() {
				row[i] = string(v)
			}
			result = append(result, row)
		}
		if len(rr.FieldDescriptions()) > 0 {
			rows = append([][]string{}, result...)
		}
		if _, err := rr.Close(); err != nil {
			break // reported by mrr.Close
		}
	}
	if err := mrr.Close(); err != nil {
		return nil, fmt.Errorf("in database %q: %s: %w", db, abbreviate(sql), err)
	}
	return rows, nil
}

func abbreviate(sql string) string {
	sql = strings.Join(strings.Fields(sql), " ")
	if len(sql) > 200 {
		sql = sql[:200] + "…"
	}
	return strconv.Quote(sql)
}

// errNoPostgres marks a machine without PostgreSQL: a skip locally, a failure in CI.
var errNoPostgres = errors.New("no PostgreSQL server binaries")

func failOrSkip(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, errNoPostgres) && !inCI() {
		t.Skipf("pgtest: %v (install PostgreSQL, or put its bin directory on PATH)", err)
	}
	t.Fatalf("pgtest: %v", err)
}

func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

var binDir struct {
	once sync.Once
	dir  string
	err  error
}

// BinDir finds the PostgreSQL binaries: `pg_config --bindir` on PATH, else the newest
// /usr/lib/postgresql/*/bin, else the directory of pg_ctl on PATH (symlinks resolved).
// A directory counts only if it holds initdb, pg_ctl and postgres.
func BinDir() (string, error) {
	binDir.once.Do(func() { binDir.dir, binDir.err = findBinDir() })
	return binDir.dir, binDir.err
}

func findBinDir() (string, error) {
	var tried []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if hasServer(dir) {
			return dir, nil
		}
		tried = append(tried, dir)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, dir := range dirs {
		if hasServer(dir) {
			return dir, nil
		}
		tried = append(tried, dir)
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if hasServer(dir) {
			return dir, nil
		}
		tried = append(tried, dir)
	}
	if len(tried) == 0 {
		return "", fmt.Errorf("%w: no pg_config or pg_ctl on PATH and no /usr/lib/postgresql/*/bin", errNoPostgres)
	}
	return "", fmt.Errorf("%w: none of %s holds initdb, pg_ctl and postgres", errNoPostgres, strings.Join(tried, ", "))
}

func hasServer(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

// version reads the major version out of /usr/lib/postgresql/<major>/bin.
func version(dir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
	return v
}

// osAccount is the unprivileged account the server runs as when tests run as root,
// because PostgreSQL refuses to run as root.
type osAccount struct {
	name     string
	uid, gid uint32
}

func serverAccount() (*osAccount, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	var errs []error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			errs = append(errs, fmt.Errorf("user %s has a non-numeric uid/gid", name))
			continue
		}
		return &osAccount{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("running as root, and found no account to run PostgreSQL as: %w", errors.Join(errs...))
}

// command prepares a PostgreSQL program to run as the cluster's owner.
func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	path := name
	if name != "cp" {
		path = filepath.Join(c.BinDir, name)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "HOME="+c.dir, "PGDATA="+c.DataDir)
	if c.owner != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: c.owner.uid, Gid: c.owner.gid},
		}
	}
	return cmd
}

func (c *Cluster) runTool(name string, args ...string) error {
	out, err := c.command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// clusterRoot is where cluster directories go. Unix socket paths must stay under
// ~100 bytes, so a long TMPDIR is not used.
func clusterRoot() string {
	if dir := os.TempDir(); len(dir) <= 40 {
		return dir
	}
	return "/tmp"
}

const dirPrefix = "pgt-"

// serverSettings make the server quick to start and to write; durability does not
// matter for a cluster that is deleted after the test.
var serverSettings = []string{
	"listen_addresses = '127.0.0.1'",
	"max_connections = 50",
	"max_prepared_transactions = 5", // tests prepare transactions that must block a swap
	"fsync = off",
	"synchronous_commit = off",
	"full_page_writes = off",
	"shared_buffers = 32MB",
	"dynamic_shared_memory_type = mmap",
	"logging_collector = off",
}

func start() (c *Cluster, err error) {
	reapOrphansOnce.Do(reapOrphans)
	c, err = newCluster()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.destroy()
		}
	}()
	if tpl := template(); tpl != nil {
		// Copying an initdb'd template takes a third of the time of initdb.
		c.Password = tpl.Password
		if err := c.runTool("cp", "-R", "-p", tpl.DataDir, c.DataDir); err != nil {
			return nil, err
		}
	} else if err := c.initdb(); err != nil {
		return nil, err
	}
	conf := strings.Join(serverSettings, "\n") + "\nunix_socket_directories = '" + c.dir + "'\n"
	if err := appendFile(filepath.Join(c.DataDir, "postgresql.conf"), conf); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		if c.Port, err = freePort(); err != nil {
			return nil, err
		}
		err = c.runTool("pg_ctl", "-D", c.DataDir, "-w", "-t", "60", "-l", c.logPath(),
			"-o", "-p "+strconv.Itoa(c.Port), "start")
		if err == nil {
			return c, nil
		}
		log := c.logTail()
		if attempt < 5 && strings.Contains(log, "already in use") {
			continue // another process took the port between freePort and the server's bind
		}
		return nil, fmt.Errorf("start PostgreSQL in %s: %v\nserver log:\n%s", c.dir, err, log)
	}
}

// newCluster makes the directory of a cluster, owned by the account the server
// will run as, with nothing in it yet but the owner file.
func newCluster() (*Cluster, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	owner, err := serverAccount()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(clusterRoot(), dirPrefix)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		Host:     "127.0.0.1",
		User:     "postgres",
		Password: randomPassword(),
		BinDir:   bin,
		DataDir:  filepath.Join(dir, "data"),
		dir:      dir,
		owner:    owner,
	}
	// The owner file lets a later test run find and stop this cluster if this
	// process dies before its cleanup runs.
	err = os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644)
	if err == nil && owner != nil {
		err = os.Chown(dir, int(owner.uid), int(owner.gid))
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

func (c *Cluster) initdb() error {
	pwfile := filepath.Join(c.dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(c.Password+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	if c.owner != nil {
		if err := os.Chown(pwfile, int(c.owner.uid), int(c.owner.gid)); err != nil {
			return err
		}
	}
	return c.runTool("initdb", "-D", c.DataDir, "-U", c.User, "--pwfile", pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
}

func (c *Cluster) logPath() string { return filepath.Join(c.dir, "server.log") }

func (c *Cluster) logTail() string {
	b, err := os.ReadFile(c.logPath())
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomPassword() string {
	b := make([]byte, 12)
	rand.Read(b)
	return "pw-" + hex.EncodeToString(b)
}

// stop shuts the server down if it is running. Safe to call any number of times.
func (c *Cluster) stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	return stopDataDir(c.DataDir, c.command)
}

// stopDataDir stops whatever server runs on dataDir: pg_ctl first, and if that fails,
// SIGKILL to the postmaster named in postmaster.pid, so no server outlives its test.
func stopDataDir(dataDir string, command func(string, ...string) *exec.Cmd) error {
	pidFile := filepath.Join(dataDir, "postmaster.pid")
	if _, err := os.Stat(pidFile); errors.Is(err, os.ErrNotExist) {
		return nil // never started, or already stopped
	}
	pid := postmasterPID(pidFile)
	out, err := command("pg_ctl", "-D", dataDir, "-w", "-t", "30", "-m", "immediate", "stop").CombinedOutput()
	if err != nil && pid > 0 {
		if killErr := syscall.Kill(pid, syscall.SIGKILL); killErr != nil && !errors.Is(killErr, syscall.ESRCH) {
			return fmt.Errorf("stop PostgreSQL in %s: pg_ctl: %v: %s; kill %d: %v", dataDir, err, strings.TrimSpace(string(out)), pid, killErr)
		}
	} else if err != nil {
		return fmt.Errorf("stop PostgreSQL in %s: %v: %s", dataDir, err, strings.TrimSpace(string(out)))
	}
	// pg_ctl returns once postmaster.pid is gone, a moment before the postmaster has
	// exited and released its port; wait for that so "server is down" really is.
	if pid > 0 && !waitExit(pid, 30*time.Second) {
		return fmt.Errorf("stop PostgreSQL in %s: postmaster %d still running", dataDir, pid)
	}
	return nil
}

func postmasterPID(pidFile string) int {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// waitExit waits until process pid has exited (a zombie counts as exited: the
// postmaster is not our child, so reaping it is up to init).
func waitExit(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if !alive(pid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}

// destroy stops the server and deletes every file of the cluster.
func (c *Cluster) destroy() error {
	stopErr := c.stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return stopErr
	}
	c.removed = true
	return errors.Join(stopErr, os.RemoveAll(c.dir))
}

// Command prepares one of the server's programs (pg_basebackup, pg_ctl, …) to run as the
// OS account the server runs as, in the cluster's directory.
func (c *Cluster) Command(name string, args ...string) *exec.Cmd { return c.command(name, args...) }

// GiveToServer makes path, and everything under it, belong to the OS account the server
// runs as: directories its archive_command writes into, a data directory it will run.
func (c *Cluster) GiveToServer(path string) error {
	if c.owner == nil {
		return nil
	}
	return filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(c.owner.uid), int(c.owner.gid))
	})
}
