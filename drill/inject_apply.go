package drill

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"drconsole/drill/inject"
	"drconsole/wal"
)

// ApplyInject does what an inject names, for real, in the sandbox, and says what was
// done. An escalation asks something of the team, not of the sandbox: nothing is done.
func (s *Sandbox) ApplyInject(_ context.Context, apply string) (string, error) {
	switch apply {
	case inject.PrimaryUnreachable:
		return s.MakePrimaryUnreachable()
	case inject.NewestBackupCorrupt:
		return s.CorruptNewestBackup()
	case inject.Escalate, "":
		return "", nil
	}
	return "", fmt.Errorf("apply %q is unknown: use %s", apply, strings.Join(inject.Applies, ", "))
}

// primaryDir is where the configuration points the primary location; unreachableDir is
// where it goes when its region is down (the regional outage's fault puts it there too).
func (s *Sandbox) primaryDir() string     { return filepath.Join(s.Dir, "backups", "primary") }
func (s *Sandbox) unreachableDir() string { return s.primaryDir() + ".unreachable" }

// MakePrimaryUnreachable takes the primary location's directory away from where the
// configuration points: listing or reading it fails, as a bucket in a region that is down.
func (s *Sandbox) MakePrimaryUnreachable() (string, error) {
	if _, err := os.Stat(s.primaryDir()); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(s.unreachableDir()); err == nil {
			return "the primary location was already unreachable", nil
		}
	}
	if err := os.Rename(s.primaryDir(), s.unreachableDir()); err != nil {
		return "", fmt.Errorf("make the primary location unreachable: %w", err)
	}
	return "the primary location (" + s.primaryDir() + ") is unreachable: its directory is gone from where the configuration points", nil
}

// CorruptNewestBackup damages the newest backup's bytes in every location that holds it
// (the primary one even while unreachable), so that verifying or restoring it fails. When
// it was the backup to restore, the one before it becomes the right answer.
func (s *Sandbox) CorruptNewestBackup() (string, error) {
	if len(s.Backups) == 0 {
		return "", errors.New("the sandbox has no backups to damage")
	}
	newest := s.Backups[len(s.Backups)-1]
	var where []string
	for _, dir := range []string{s.primaryDir(), s.unreachableDir(), filepath.Join(s.Dir, "backups", "secondary")} {
		p := filepath.Join(dir, newest)
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		if err := damage(p, st.Size()); err != nil {
			return "", fmt.Errorf("damage %s: %w", p, err)
		}
		os.Chtimes(p, st.ModTime(), st.ModTime()) // it looks untouched, as silent corruption does
		where = append(where, strings.TrimSuffix(filepath.Base(dir), ".unreachable"))
	}
	if len(where) == 0 {
		return "", fmt.Errorf("the newest backup %s is in no location of the sandbox", newest)
	}
	what := fmt.Sprintf("the newest backup %s was damaged in %s: it fails verification", newest, strings.Join(where, " and "))
	if s.Clean == newest && len(s.Backups) > 1 {
		s.Clean = s.Backups[len(s.Backups)-2]
		if a, ok := s.answers[s.Clean]; ok {
			s.Truth, s.Prints = a.truth, a.prints
		}
		s.Fault += "; an inject damaged the newest backup " + newest + ": the right one is now " + s.Clean
	}
	return what, nil
}

// damage inverts a run of bytes in the middle of the file: the encryption's integrity
// check, or the compression's, fails on them.
func damage(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	n := min(size/4, 4096)
	if n == 0 {
		f.Close()
		return errors.New("the file is empty")
	}
	buf := make([]byte, n)
	at := size / 2
	if _, err := f.ReadAt(buf, at); err != nil {
		f.Close()
		return err
	}
	for i := range buf {
		buf[i] ^= 0xff
	}
	if _, err := f.WriteAt(buf, at); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ServerTool readies the sandbox for a recovery to a point in time when the drill runs as
// root: the recovered server runs restore_command (drconsole wal-fetch) as the postgres
// account, which must run drconsole and read the sandbox's configuration, drill key and
// locations. self (this drconsole) is copied into the sandbox, where that account can run
// it, and the sandbox's files are given to it. It returns the copy's path.
func (s *Sandbox) ServerTool(self string) (string, error) {
	if self == "" {
		return "", errors.New("drconsole's own executable is not known")
	}
	tool := filepath.Join(s.Dir, "drconsole")
	data, err := os.ReadFile(self)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(tool, data, 0o755); err != nil {
		return "", err
	}
	for _, p := range []string{tool, s.Config, s.Secret, s.Public, filepath.Join(s.Dir, "backups")} {
		if err := wal.GiveToServer(p); err != nil {
			return "", err
		}
	}
	return tool, nil
}
