package storage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A write killed mid-way (kill -9 of drconsole backup) leaves its temporary file; the next
// Put to the directory removes it, and never one that a live write holds.
func TestPutRemovesWhatKilledWritesLeft(t *testing.T) {
	root := t.TempDir()
	d := NewDir("local", root)
	stale := filepath.Join(root, tempPrefix+"spywatcher_full_20240101_000000.dump.gz.gpg.123")
	live := filepath.Join(root, tempPrefix+"spywatcher_full_20240101_010000.dump.gz.gpg.456")
	for _, p := range []string{stale, live} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	held, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := syscall.Flock(int(held.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Put(context.Background(), "spywatcher_full_20240102_000000.dump.gz.gpg", strings.NewReader("whole")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the killed write's file is still there: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a write in progress lost its file: %v", err)
	}
}

// The WAL archive and the base backups under a directory location are not backups:
// List leaves them to WALOf and BasesOf.
func TestDirListLeavesWALAndBasesOut(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{"wal/000000010000000000000001-ab.zst", "base/spywatcher_base_20240125_120000.tar.zst", "spywatcher_full_20240125_120000.dump"} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o700)
		os.WriteFile(filepath.Join(root, p), []byte("x"), 0o600)
	}
	d := NewDir("local", root)
	got, err := d.List(context.Background())
	if err != nil || len(got) != 1 || got[0].Name != "spywatcher_full_20240125_120000.dump" {
		t.Fatalf("List: %v %v", got, err)
	}
	for f, want := range map[Folder]string{WALOf(d): "000000010000000000000001-ab.zst", BasesOf(d): "spywatcher_base_20240125_120000.tar.zst"} {
		objs, err := f.Find(context.Background(), "")
		if err != nil || len(objs) != 1 || objs[0].Key != want {
			t.Errorf("%s: Find: %v %v", f, objs, err)
		}
	}
}
