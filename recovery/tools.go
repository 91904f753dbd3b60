package recovery

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Tools are the PostgreSQL client programs the pipeline ends in (and backup starts with).
type Tools struct {
	Restore string // pg_restore
	Dump    string // pg_dump
	Version string // pg_restore --version
	Major   int
}

// FindTools locates pg_restore and pg_dump: in binDir when given (or
// $DRCONSOLE_PG_BINDIR), else the newest /usr/lib/postgresql/*/bin (a newer pg_restore
// reads older archives), else $PATH.
func FindTools(ctx context.Context, binDir string) (*Tools, error) {
	if binDir == "" {
		binDir = os.Getenv("DRCONSOLE_PG_BINDIR")
	}
	var dirs []string
	if binDir != "" {
		dirs = []string{binDir}
	} else {
		matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Slice(matches, func(i, j int) bool { return versionOfDir(matches[i]) > versionOfDir(matches[j]) })
		dirs = append(matches, "")
	}
	for _, d := range dirs {
		t := &Tools{}
		for _, p := range []struct {
			name string
			dst  *string
		}{{"pg_restore", &t.Restore}, {"pg_dump", &t.Dump}} {
			if d == "" {
				if path, err := exec.LookPath(p.name); err == nil {
					*p.dst = path
				}
			} else if path := filepath.Join(d, p.name); isExecutable(path) {
				*p.dst = path
			}
		}
		if t.Restore == "" {
			continue
		}
		version := exec.CommandContext(ctx, t.Restore, "--version")
		version.Env = libpqFreeEnviron() // like every child: none of drconsole's secrets
		version.SysProcAttr = childAttr()
		out, err := version.Output()
		if err != nil {
			return nil, fmt.Errorf("%w: %s --version failed: %v", ErrPreflight, t.Restore, err)
		}
		t.Version = strings.TrimSpace(string(out))
		if t.Major, err = pgMajor(t.Version); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrPreflight, err)
		}
		return t, nil
	}
	where := "$PATH or /usr/lib/postgresql/*/bin"
	if binDir != "" {
		where = binDir
	}
	return nil, fmt.Errorf("%w: pg_restore not found in %s (install the PostgreSQL client tools, e.g. apt-get install postgresql-client)", ErrPreflight, where)
}

func versionOfDir(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func isExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0
}

// CheckArchive refuses an archive this pg_restore is too old to read.
func (t *Tools) CheckArchive(a *Archive) error {
	if a == nil {
		return nil
	}
	if a.version > maxArchiveVersion(t.Major) {
		return fmt.Errorf("%w: archive version %s (pg_dump %s) is too new for %s; install the PostgreSQL %s client tools", ErrPreflight, a.Version, a.DumpVersion, t.Version, majorOf(a.DumpVersion))
	}
	return nil
}

func majorOf(v string) string {
	major, _, _ := strings.Cut(v, ".")
	if major == "" {
		return "newer"
	}
	return major
}

// childAttr is how drconsole starts pg_restore and pg_dump: in a process group of their
// own, so a Ctrl-C on the terminal reaches drconsole only, which then stops the child and
// cleans up in order; and killed with drconsole (kill -9 included), so that no child keeps
// writing into a scratch database nobody is watching.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
