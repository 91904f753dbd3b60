package wal

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A throwaway cluster (a drill's sandbox, the temporary cluster of a point-in-time
// recovery into a live database) lives in a work directory that records the drconsole that
// made it. When that drconsole dies without cleaning up (kill -9, a crash), the next one
// stops the cluster and removes the directory, unless it was kept on purpose.
const (
	OwnerFile = "drconsole.pid"
	KeptFile  = "kept"
)

// MarkOwner records this process as dir's owner.
func MarkOwner(dir string) error {
	return os.WriteFile(filepath.Join(dir, OwnerFile), []byte(strconv.Itoa(os.Getpid())), 0o644)
}

// RemoveOrphans stops and removes the work directories parent/pattern whose owner is dead
// and that are not kept; data is their cluster's data directory inside them.
func RemoveOrphans(parent, pattern, data string) ([]string, error) {
	if parent == "" {
		parent = os.TempDir()
	}
	dirs, _ := filepath.Glob(filepath.Join(parent, pattern))
	var removed []string
	var errs []error
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, KeptFile)); err == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, OwnerFile))
		if err != nil {
			continue // not ours to judge
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || alive(pid) {
			continue
		}
		if err := StopCluster(filepath.Join(d, data)); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, d)
	}
	return removed, errors.Join(errs...)
}

// StopCluster stops the server running on pgdata, if one is (immediate: it is a copy).
func StopCluster(pgdata string) error {
	defer EndPrefetch(pgdata)
	if _, err := os.Stat(filepath.Join(pgdata, "postmaster.pid")); err != nil {
		return nil
	}
	v, err := os.ReadFile(filepath.Join(pgdata, "PG_VERSION"))
	if err != nil {
		return err
	}
	major, _ := strconv.Atoi(strings.TrimSpace(string(v)))
	pgctl, err := ServerBin(major, "pg_ctl")
	if err != nil {
		return err
	}
	cmd := exec.Command(pgctl, "-D", pgdata, "-m", "immediate", "-w", "stop")
	if err := RunAsServer(cmd); err != nil {
		return err
	}
	if out, err := cmd.CombinedOutput(); err != nil && !bytes.Contains(out, []byte("Is server running?")) {
		return fmt.Errorf("stopping the cluster in %s: %v: %s", pgdata, err, bytes.TrimSpace(out))
	}
	return nil
}

// FreePort is a TCP port nothing listens on now: a throwaway cluster's port (its socket's
// name when it listens on no TCP address).
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func alive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}
