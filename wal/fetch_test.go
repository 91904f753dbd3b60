package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"drconsole/storage"
)

// fakeSegment is a segment of size bytes whose first page header says it is name.
func fakeSegment(t *testing.T, name string, size int64) []byte {
	t.Helper()
	s, ok := parseSegment(name)
	if !ok {
		t.Fatalf("%s is not a segment name", name)
	}
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(s.seg), 1))
	for i := 64; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64()%1000) // compressible, not constant
	}
	binary.LittleEndian.PutUint16(b[0:], 0xD110)
	binary.LittleEndian.PutUint16(b[2:], 0x0002)
	binary.LittleEndian.PutUint64(b[8:], s.startLSN(size))
	binary.LittleEndian.PutUint32(b[32:], uint32(size))
	binary.LittleEndian.PutUint32(b[36:], 8192)
	return b
}

// archiveOf pushes n segments of 1 MiB, from 000000010000000000000001, into a directory
// location, and returns it with the segments' names and contents.
func archiveOf(t *testing.T, n int) (storage.Folder, []string, map[string][]byte) {
	t.Helper()
	loc := storage.WALOf(storage.NewDir("local", t.TempDir()))
	p := &Pusher{Locations: []storage.Folder{loc}}
	src := t.TempDir()
	var names []string
	data := map[string][]byte{}
	s := segment{tli: 1, seg: 1}
	for range n {
		name := s.String()
		b := fakeSegment(t, name, 1<<20)
		path := filepath.Join(src, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Push(context.Background(), path); err != nil {
			t.Fatal(err)
		}
		names, data[name] = append(names, name), b
		s = s.next(1 << 20)
	}
	return loc, names, data
}

// After a fetch, Prefetch fetches the next segments into the spool; the fetches that
// follow take them from there, checked as any fetch; the end of the archive removes it.
func TestPrefetch(t *testing.T) {
	loc, names, data := archiveOf(t, 6)
	ctx := context.Background()
	wal := filepath.Join(t.TempDir(), "pg_wal")
	os.Mkdir(wal, 0o700)
	dest := filepath.Join(wal, "RECOVERYXLOG")
	f := &Fetcher{Locations: []storage.Folder{loc}, Spool: SpoolFor(dest), Ahead: 3, Idle: 100 * time.Millisecond}
	if from, err := f.Fetch(ctx, names[0], dest); err != nil || from != "local" {
		t.Fatalf("first fetch: %q %v", from, err)
	}
	if err := f.MakeSpool(); err != nil {
		t.Fatal(err)
	}
	if err := f.Prefetch(ctx, names[0], 1<<20); err != nil {
		t.Fatal(err)
	}
	spooled, _ := os.ReadDir(f.Spool)
	var got []string
	for _, e := range spooled {
		if !strings.HasPrefix(e.Name(), ".") {
			got = append(got, e.Name())
		}
	}
	if len(got) != 3 || got[0] != names[1] || got[2] != names[3] {
		t.Fatalf("spooled after %s: %v, want the next 3", names[0], got)
	}
	for _, n := range names[1:4] {
		from, err := f.Fetch(ctx, n, dest)
		if err != nil || from != "prefetched" {
			t.Fatalf("fetch of %s: %q %v, want it prefetched", n, from, err)
		}
		if b, _ := os.ReadFile(dest); !bytes.Equal(b, data[n]) {
			t.Fatalf("%s from the spool differs", n)
		}
	}
	// Ahead of the archive's end: only what there is; a passed segment is dropped.
	f.Prefetch(ctx, names[3], 1<<20)
	if got := spooledSegments(f.Spool); !slices.Equal(got, names[4:6]) {
		t.Errorf("spool after %s: %v, want the 2 segments left", names[3], got)
	}
	end := segment{tli: 1, seg: 7}.String()
	if _, err := f.Fetch(ctx, end, dest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fetch past the end: %v", err)
	}
	if _, err := os.Stat(f.Spool); !os.IsNotExist(err) {
		t.Errorf("the spool is still there at the end of the archive: %v", err)
	}
	// A prefetch started when recovery had already ended leaves nothing behind.
	f.Prefetch(ctx, names[0], 1<<20)
	if _, err := os.Stat(f.Spool); !os.IsNotExist(err) {
		t.Errorf("a late prefetch made the spool again")
	}
}

func spooledSegments(spool string) []string {
	entries, _ := os.ReadDir(spool)
	var got []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			got = append(got, e.Name())
		}
	}
	return got
}

// damage flips a byte in the middle of name's archived copy.
func damage(t *testing.T, loc storage.Folder, name string) {
	t.Helper()
	objs, err := loc.Find(context.Background(), name)
	if err != nil || len(objs) == 0 {
		t.Fatalf("%s is not archived: %v", name, err)
	}
	p := filepath.Join(loc.String(), objs[0].Key)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A spooled segment was checked before it was spooled: a damaged archive copy never
// gets there, and the fetch that needs it reports the damage.
func TestPrefetchSpoolsOnlyGoodCopies(t *testing.T) {
	loc, names, _ := archiveOf(t, 3)
	ctx := context.Background()
	damage(t, loc, names[1])
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	f := &Fetcher{Locations: []storage.Folder{loc}, Spool: SpoolFor(dest), Ahead: 2, Idle: 100 * time.Millisecond}
	f.MakeSpool()
	f.Prefetch(ctx, names[0], 1<<20)
	if _, err := os.Stat(filepath.Join(f.Spool, names[1])); err == nil {
		t.Fatal("a damaged copy was spooled")
	}
	if _, err := f.Fetch(ctx, names[1], dest); !errors.Is(err, ErrDamaged) {
		t.Fatalf("fetch of the damaged segment: %v", err)
	}
}

// One prefetch follows recovery: as each fetch asks for the next segment it keeps the
// Ahead after it spooled, so every fetch after the first takes its segment from the
// spool; the end of the archive removes the spool and the prefetch ends with it. A
// segment it could not fetch is not waited for: the fetch that needs it reports why.
func TestPrefetchFollowsRecovery(t *testing.T) {
	loc, names, data := archiveOf(t, 8)
	ctx := context.Background()
	damage(t, loc, names[6])
	f, dest, ended := startRecovery(t, loc, names[0])
	// It holds its lock as long as it runs (Idle is a minute here), however far it got.
	for deadline := time.Now().Add(10 * time.Second); !Prefetching(f.Spool); {
		if time.Now().After(deadline) {
			t.Fatal("no prefetch runs")
		}
		time.Sleep(time.Millisecond)
	}
	// With 2 ahead, the spool can hold a segment only if the prefetch followed every
	// fetch before it. (Waiting for it keeps a starved prefetch from failing the test: a
	// fetch that finds its segment neither spooled nor planned fetches it itself.)
	waitSpooled := func(n string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			if _, err := os.Stat(filepath.Join(f.Spool, n)); err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never reached the spool: the prefetch did not follow recovery (spool %v, asked %s)", n, spooledSegments(f.Spool), asked(f.Spool))
			}
		}
	}
	for _, n := range names[1:6] {
		waitSpooled(n)
		from, err := f.Fetch(ctx, n, dest)
		if err != nil || from != "prefetched" {
			plan, _ := os.ReadFile(filepath.Join(f.Spool, ".plan"))
			t.Fatalf("fetch of %s: %q %v, want it prefetched (plan %q, asked %q, spool %v)", n, from, err, plan, asked(f.Spool), spooledSegments(f.Spool))
		}
		if b, _ := os.ReadFile(dest); !bytes.Equal(b, data[n]) {
			t.Fatalf("%s from the spool differs", n)
		}
		if !Prefetching(f.Spool) {
			t.Fatalf("the prefetch ended after %s", n)
		}
	}
	start := time.Now()
	if _, err := f.Fetch(ctx, names[6], dest); !errors.Is(err, ErrDamaged) {
		t.Fatalf("fetch of the damaged segment: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the fetch of a segment the prefetch could not fetch waited %v for it", d)
	}
	waitSpooled(names[7])
	if from, err := f.Fetch(ctx, names[7], dest); err != nil || from != "prefetched" {
		t.Fatalf("fetch of %s after the damaged one: %q %v", names[7], from, err)
	}
	end := segment{tli: 1, seg: 9}.String()
	if _, err := f.Fetch(ctx, end, dest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fetch past the end: %v", err)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the prefetch still runs after recovery reached the end of the archive")
	}
	if _, err := os.Stat(f.Spool); !os.IsNotExist(err) {
		t.Errorf("the spool is still there at the end of the archive: %v", err)
	}
}

// startRecovery fetches first into a new pg_wal, as recovery's first restore_command
// does, and starts the prefetch after it (2 ahead, idle for a minute): the fetcher, the
// destination, and a channel closed when the prefetch ends.
func startRecovery(t *testing.T, loc storage.Folder, first string) (*Fetcher, string, chan struct{}) {
	t.Helper()
	ctx := context.Background()
	wal := filepath.Join(t.TempDir(), "pg_wal")
	os.Mkdir(wal, 0o700)
	dest := filepath.Join(wal, "RECOVERYXLOG")
	f := &Fetcher{Locations: []storage.Folder{loc}, Spool: SpoolFor(dest), Ahead: 2, Idle: time.Minute}
	if _, err := f.Fetch(ctx, first, dest); err != nil {
		t.Fatal(err)
	}
	f.MakeSpool()
	ended := make(chan struct{})
	go func() { f.Prefetch(ctx, first, 1<<20); close(ended) }()
	return f, dest, ended
}

// RestoreCommand takes a spooled segment with mv, which tells the prefetch nothing: it
// follows recovery by the segments taken from its spool.
func TestPrefetchFollowsTakenSegments(t *testing.T) {
	loc, names, data := archiveOf(t, 8)
	ctx := context.Background()
	f, dest, ended := startRecovery(t, loc, names[0])
	for _, n := range names[1:] {
		deadline := time.Now().Add(10 * time.Second)
		for os.Rename(filepath.Join(f.Spool, n), dest) != nil { // restore_command's mv
			if time.Now().After(deadline) {
				t.Fatalf("%s never reached the spool: the prefetch did not follow the segments taken (spool %v)", n, spooledSegments(f.Spool))
			}
			time.Sleep(time.Millisecond)
		}
		if b, _ := os.ReadFile(dest); !bytes.Equal(b, data[n]) {
			t.Fatalf("%s from the spool differs", n)
		}
	}
	if _, err := f.Fetch(ctx, segment{tli: 1, seg: 9}.String(), dest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fetch past the end: %v", err)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the prefetch still runs after recovery reached the end of the archive")
	}
}

// A fetch killed while it wrote leaves its temporary file beside the destination; the
// next fetch removes it, but never one a running fetch holds.
func TestFetchRemovesAKilledFetchsFile(t *testing.T) {
	loc, names, _ := archiveOf(t, 1)
	dir := t.TempDir()
	dest := filepath.Join(dir, "RECOVERYXLOG")
	stale := filepath.Join(dir, ".RECOVERYXLOG.drconsole-123")
	held := filepath.Join(dir, ".RECOVERYXLOG.drconsole-456")
	os.WriteFile(stale, []byte("half a segment"), 0o600)
	os.WriteFile(held, []byte("being written"), 0o600)
	h, err := os.Open(held)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := syscall.Flock(int(h.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	f := &Fetcher{Locations: []storage.Folder{loc}}
	if _, err := f.Fetch(context.Background(), names[0], dest); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the killed fetch's file is still there")
	}
	if _, err := os.Stat(held); err != nil {
		t.Errorf("a file another fetch holds was removed: %v", err)
	}
}
