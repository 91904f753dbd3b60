package pgtest

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

var shared struct {
	mu      sync.Mutex
	main    bool // Main is running this package's tests
	started bool
	c       *Cluster
	err     error
}

// Main runs the tests of a package that uses Shared and then stops the shared cluster.
// Call it from the package's TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M) int {
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()
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
	if !shared.main {
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
