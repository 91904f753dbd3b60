package pgtest

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// mainRunning says the package's TestMain called Main, which cleans up at the end.
var mainRunning atomic.Bool

var shared struct {
	mu      sync.Mutex
	started bool
	c       *Cluster
	err     error
}

// Main runs the tests of a package that uses Shared and then stops the shared cluster.
// Call it from the package's TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M) int {
	mainRunning.Store(true)
	defer removeTemplate()
	defer stopShared()
	return m.Run()
}

// Shared returns the test binary's one shared cluster, starting it on first use. Tests
// that share it must not depend on each other's databases: create your own (NewDB) and
// leave the cluster's settings alone. Shared fails the test unless the package's
// TestMain calls Main, which stops the cluster when the tests are done.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !mainRunning.Load() {
		t.Fatal("pgtest.Shared needs the package's TestMain to call pgtest.Main: " +
			"func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }")
	}
	if !shared.started {
		shared.started = true
		shared.c, shared.err = start()
	}
	if shared.err != nil {
		failOrSkip(t, shared.err)
	}
	return shared.c
}

func stopShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c != nil {
		if err := shared.c.destroy(); err != nil {
			os.Stderr.WriteString("pgtest: stop the shared cluster: " + err.Error() + "\n")
		}
	}
}

const ownerFile = "owner.pid"

var reapOrphansOnce sync.Once

// reapOrphans stops and deletes clusters left behind by test processes that died
// before their cleanup ran (killed on timeout, interrupted).
func reapOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(clusterRoot(), dirPrefix+"*"))
	if len(dirs) == 0 {
		return
	}
	bin, err := BinDir()
	if err != nil {
		return
	}
	owner, err := serverAccount()
	if err != nil {
		return
	}
	for _, dir := range dirs {
		if !orphaned(dir) {
			continue
		}
		c := &Cluster{BinDir: bin, DataDir: filepath.Join(dir, "data"), dir: dir, owner: owner}
		c.destroy()
	}
}

func orphaned(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return false // not ours, or being created right now
	}
	pid, err := strconv.Atoi(string(b))
	if err != nil || pid <= 0 {
		return false
	}
	err = syscall.Kill(pid, 0)
	return err == syscall.ESRCH
}

var tpl struct {
	mu    sync.Mutex
	tried bool
	c     *Cluster // never started; its data directory is copied for each cluster
}

// template returns the test binary's initdb'd template, making it on first use, or
// nil to fall back to initdb per cluster. Only Main can delete the template when the
// tests end, so only packages whose TestMain calls Main get one.
func template() *Cluster {
	tpl.mu.Lock()
	defer tpl.mu.Unlock()
	if !mainRunning.Load() || tpl.tried {
		return tpl.c
	}
	tpl.tried = true
	c, err := newCluster()
	if err != nil {
		return nil
	}
	if err := c.initdb(); err != nil {
		c.destroy()
		return nil
	}
	tpl.c = c
	return c
}

func removeTemplate() {
	tpl.mu.Lock()
	defer tpl.mu.Unlock()
	if tpl.c != nil {
		tpl.c.destroy()
		tpl.c = nil
	}
}
