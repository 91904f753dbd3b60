package wal

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/klauspost/compress/zstd"

	"drconsole/recovery"
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
// follow take them from there, checked as any fetch, and the spool keeps the one taken
// last; the end of recovery removes it.
func TestPrefetch(t *testing.T) {
	loc, names, data := archiveOf(t, 6)
	ctx := context.Background()
	wal := filepath.Join(t.TempDir(), "pg_wal")
	os.Mkdir(wal, 0o700)
	dest := filepath.Join(wal, "RECOVERYXLOG")
	f := &Fetcher{Locations: []storage.Folder{loc}, Spool: SpoolFor(dest), Ahead: 3, Idle: time.Minute}
	if from, err := f.Fetch(ctx, names[0], dest); err != nil || from != "local" {
		t.Fatalf("first fetch: %q %v", from, err)
	}
	if err := f.MakeSpool(); err != nil {
		t.Fatal(err)
	}
	prefetchUntil(t, f, names[0], names[1:4])
	for _, n := range names[1:4] {
		from, err := f.Fetch(ctx, n, dest)
		if err != nil || from != "prefetched" {
			t.Fatalf("fetch of %s: %q %v, want it prefetched", n, from, err)
		}
		if b, _ := os.ReadFile(dest); !bytes.Equal(b, data[n]) {
			t.Fatalf("%s from the spool differs", n)
		}
	}
	// Ahead of the archive's end: only what there is; the segment taken last and the one
	// before it stay, older ones go.
	prefetchUntil(t, f, names[3], names[2:6])
	for _, n := range names[4:6] {
		if from, err := f.Fetch(ctx, n, dest); err != nil || from != "prefetched" {
			t.Fatalf("fetch of %s: %q %v, want it prefetched", n, from, err)
		}
	}
	end := segment{tli: 1, seg: 7}.String()
	if _, err := f.Fetch(ctx, end, dest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fetch past the end: %v", err)
	}
	if from, err := f.Fetch(ctx, names[5], dest); err != nil || from != "prefetched" {
		t.Fatalf("%s read again at the end of the archive: %q %v, want it from the spool", names[5], from, err)
	}
	if b, _ := os.ReadFile(dest); !bytes.Equal(b, data[names[5]]) {
		t.Fatalf("%s read again differs", names[5])
	}
	if _, err := f.Fetch(ctx, "00000002.history", dest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fetch of the next timeline's history: %v", err)
	}
	if _, err := os.Stat(f.Spool); !os.IsNotExist(err) {
		t.Errorf("the spool is still there at the end of recovery: %v", err)
	}
	// A prefetch started when recovery had already ended leaves nothing behind.
	f.Prefetch(ctx, names[0], 1<<20)
	if _, err := os.Stat(f.Spool); !os.IsNotExist(err) {
		t.Errorf("a late prefetch made the spool again")
	}
	// Nothing asked for Idle: the prefetch ends, and what it spooled stays for the next
	// fetch (a replay that slow is no reason to fetch it all again).
	f.MakeSpool()
	f.Idle = 100 * time.Millisecond
	if err := f.Prefetch(ctx, names[0], 1<<20); err != nil {
		t.Fatal(err)
	}
	if got := spooledSegments(f.Spool); !slices.Equal(got, names[1:4]) || Prefetching(f.Spool) {
		t.Errorf("after an idle prefetch: spool %v, still prefetching %v; want %v kept, and no prefetch", got, Prefetching(f.Spool), names[1:4])
	}
	if from, err := f.Fetch(ctx, names[1], dest); err != nil || from != "prefetched" {
		t.Errorf("fetch after an idle prefetch: %q %v, want it from the spool", from, err)
	}
}

// prefetchUntil runs a prefetch after name until the spool holds want.
func prefetchUntil(t *testing.T, f *Fetcher, name string, want []string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Prefetch(ctx, name, 1<<20); close(done) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); !slices.Equal(spooledSegments(f.Spool), want); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("spooled after %s: %v, want %v", name, spooledSegments(f.Spool), want)
		}
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
// spool; the end of recovery removes the spool and the prefetch ends with it. A
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
	endRecovery(t, f, dest, data, names[7], ended)
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

// RestoreCommand takes a spooled segment with ln, which tells the prefetch nothing: it
// follows recovery by the segments linked out of its spool, or, for a restore_command
// written with mv, by those gone from it.
func TestPrefetchFollowsTakenSegments(t *testing.T) {
	for _, take := range []struct {
		how  string
		take func(src, dest string) error
	}{
		{"ln", os.Link},
		{"mv", os.Rename},
	} {
		t.Run(take.how, func(t *testing.T) {
			loc, names, data := archiveOf(t, 8)
			f, dest, ended := startRecovery(t, loc, names[0])
			for _, n := range names[1:] {
				os.Remove(dest) // as PostgreSQL does before restore_command
				deadline := time.Now().Add(10 * time.Second)
				for take.take(filepath.Join(f.Spool, n), dest) != nil { // restore_command's ln, or mv
					if time.Now().After(deadline) {
						t.Fatalf("%s never reached the spool: the prefetch did not follow the segments taken (spool %v)", n, spooledSegments(f.Spool))
					}
					time.Sleep(time.Millisecond)
				}
				// PostgreSQL keeps a restored segment under its own name in pg_wal
				// (KeepFileRestoredFromArchive), until a restartpoint removes it.
				kept := filepath.Join(filepath.Dir(dest), n)
				if err := os.Rename(dest, kept); err != nil {
					t.Fatal(err)
				}
				if b, _ := os.ReadFile(kept); !bytes.Equal(b, data[n]) {
					t.Fatalf("%s from the spool differs", n)
				}
			}
			endRecovery(t, f, dest, data, names[7], ended)
		})
	}
}

// endRecovery does what recovery does at the end of the archive after last: asks for the
// segment after it (not found), reads last again (the spool still has it), and looks for
// the next timeline's history (not found), which ends the prefetch and removes its spool.
func endRecovery(t *testing.T, f *Fetcher, dest string, data map[string][]byte, last string, ended chan struct{}) {
	t.Helper()
	ctx := context.Background()
	s, _ := parseSegment(last)
	if _, err := f.Fetch(ctx, s.next(1<<20).String(), dest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fetch past the end: %v", err)
	}
	if _, err := f.Fetch(ctx, last, dest); err != nil {
		t.Fatalf("%s read again at the end: %v", last, err)
	}
	if b, _ := os.ReadFile(dest); !bytes.Equal(b, data[last]) {
		t.Fatalf("%s read again differs", last)
	}
	if _, err := f.Fetch(ctx, "00000002.history", dest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fetch of the next timeline's history: %v", err)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the prefetch still runs after recovery ended")
	}
	if _, err := os.Stat(f.Spool); !os.IsNotExist(err) {
		t.Errorf("the spool is still there after recovery ended: %v", err)
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

// Every archived copy is proved whole before it is written out: by OpenPGP's MDC, or,
// where no layer proves the content, by the SHA-256 its name carries (and a zstd frame's
// checksum, which the decoder checks). A damaged copy of each kind is refused and
// nothing is written.
func TestFetchProvesEveryCopyWhole(t *testing.T) {
	ent, err := openpgp.NewEntity("Test", "", "test@example.com", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	name := segment{tli: 1, seg: 1}.String()
	seg := fakeSegment(t, name, 1<<20)
	other := bytes.Clone(seg)
	other[4096] ^= 0xff // the same segment's header, another content
	compress := func(b []byte, opts ...zstd.EOption) []byte {
		var out bytes.Buffer
		z, err := zstd.NewWriter(&out, opts...)
		if err != nil {
			t.Fatal(err)
		}
		z.Write(b)
		z.Close()
		return out.Bytes()
	}
	gz := func(b []byte) []byte {
		var out bytes.Buffer
		z := gzip.NewWriter(&out)
		z.Write(b)
		z.Close()
		return out.Bytes()
	}
	for _, c := range []struct {
		what      string
		encrypted bool
		// stored is what the archived copy is made into.
		stored func(b []byte) []byte
		want   string
	}{
		{"encrypted, a byte in the middle flipped", true, func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }, ""},
		{"encrypted, cut short", true, func(b []byte) []byte { return b[:len(b)-100] }, ""},
		{"zstd, its checksum flipped", false, func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }, ""},
		{"zstd, a byte in the middle flipped", false, func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }, ""},
		{"another content, zstd without a checksum", false, func([]byte) []byte { return compress(other, zstd.WithEncoderCRC(false)) }, "not what was archived"},
		{"another content, zstd with its checksum", false, func([]byte) []byte { return compress(other) }, "not what was archived"},
		{"another content, gzip", false, func([]byte) []byte { return gz(other) }, "not what was archived"},
		{"another content, raw", false, func([]byte) []byte { return other }, "not what was archived"},
	} {
		t.Run(c.what, func(t *testing.T) {
			loc := storage.WALOf(storage.NewDir("local", t.TempDir()))
			p := &Pusher{Locations: []storage.Folder{loc}}
			keys := &recovery.Keys{}
			if c.encrypted {
				p.Recipients = openpgp.EntityList{ent}
				keys.Entities = openpgp.EntityList{ent}
			}
			src := filepath.Join(t.TempDir(), name)
			os.WriteFile(src, seg, 0o600)
			if _, err := p.Push(ctx, src); err != nil {
				t.Fatal(err)
			}
			f := &Fetcher{Locations: []storage.Folder{loc}, Keys: keys}
			dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
			if _, err := f.Fetch(ctx, name, dest); err != nil {
				t.Fatalf("the whole copy: %v", err)
			}
			os.Remove(dest)
			objs, _ := loc.Find(ctx, name)
			path := filepath.Join(loc.String(), objs[0].Key)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(path, c.stored(b), 0o600)
			_, err = f.Fetch(ctx, name, dest)
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("fetch: %v, want it damaged (%q)", err, c.want)
			}
			if _, err := os.Stat(dest); !os.IsNotExist(err) {
				t.Errorf("something was written: %v", err)
			}
		})
	}
}

// countingFolder counts the listings asked of a folder.
type countingFolder struct {
	storage.Folder
	finds atomic.Int32
}

func (c *countingFolder) Find(ctx context.Context, prefix string) ([]storage.Backup, error) {
	c.finds.Add(1)
	return c.Folder.Find(ctx, prefix)
}

// The prefetch lists a window of sixteen segments at once, not each segment, and a
// segment archived after its window was listed is still found: a name missing from a
// listing is always listed again.
func TestPrefetchListsAWindowAtATime(t *testing.T) {
	loc, names, data := archiveOf(t, 12)
	counting := &countingFolder{Folder: loc}
	pf := (&Fetcher{Locations: []storage.Folder{counting}}).prefetcher()
	ctx := context.Background()
	dir := t.TempDir()
	for _, n := range names[:10] {
		if _, err := pf.Fetch(ctx, n, filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	if n := counting.finds.Load(); n != 1 {
		t.Errorf("%d listings for 10 segments of one window, want 1", n)
	}
	// A segment archived now, after the listing.
	late := segment{tli: 1, seg: 13}.String()
	src := filepath.Join(t.TempDir(), late)
	os.WriteFile(src, fakeSegment(t, late, 1<<20), 0o600)
	if _, err := (&Pusher{Locations: []storage.Folder{loc}}).Push(ctx, src); err != nil {
		t.Fatal(err)
	}
	if _, err := pf.Fetch(ctx, late, filepath.Join(dir, late)); err != nil {
		t.Fatalf("a segment archived after its window was listed: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, names[9])); !bytes.Equal(b, data[names[9]]) {
		t.Error("a segment fetched through the window's listing differs")
	}
	// Not archived: found nowhere, listed afresh, and no later segment.
	if _, err := pf.Fetch(ctx, segment{tli: 1, seg: 14}.String(), filepath.Join(dir, "x")); !errors.Is(err, ErrNotFound) {
		t.Errorf("past the end: %v", err)
	}
}

// A segment missing while later ones are archived is a hole, whether or not a prefetch
// runs (a fetch beside one asks about later segments at once): recovery stops there.
func TestFetchBesideAPrefetchFindsAHole(t *testing.T) {
	loc, names, _ := archiveOf(t, 8)
	ctx := context.Background()
	objs, _ := loc.Find(ctx, names[4])
	if err := os.Remove(filepath.Join(loc.String(), objs[0].Key)); err != nil {
		t.Fatal(err)
	}
	f, dest, _ := startRecovery(t, loc, names[0])
	defer EndPrefetch(filepath.Dir(filepath.Dir(dest)))
	for _, n := range names[1:4] {
		if _, err := f.Fetch(ctx, n, dest); err != nil {
			t.Fatalf("fetch of %s: %v", n, err)
		}
	}
	if !Prefetching(f.Spool) {
		t.Fatal("no prefetch runs")
	}
	_, err := f.Fetch(ctx, names[4], dest)
	if !errors.Is(err, ErrHole) || !strings.Contains(err.Error(), names[5]) {
		t.Fatalf("fetch of the missing %s: %v, want a hole before %s", names[4], err, names[5])
	}
}

// The server restarts mid-recovery: recovery goes back to its last restartpoint and asks
// again for segments it took before, which pg_wal still holds under their names, linked
// to the spool's. The prefetch that ran before the restart follows recovery back instead
// of taking those old links for progress, and what recovery asks for next is spooled.
// (Found by a blind review.)
func TestPrefetchAfterARestart(t *testing.T) {
	loc, names, data := archiveOf(t, 12)
	ctx := context.Background()
	f, dest, _ := startRecovery(t, loc, names[0])
	defer EndPrefetch(filepath.Dir(filepath.Dir(dest)))
	pgwal := filepath.Dir(dest)
	take := func(n string) bool { // restore_command's ln, then PostgreSQL keeps it under its name
		os.Remove(dest)
		if os.Link(filepath.Join(f.Spool, n), dest) != nil {
			return false
		}
		return os.Rename(dest, filepath.Join(pgwal, n)) == nil
	}
	for _, n := range names[1:7] {
		for deadline := time.Now().Add(10 * time.Second); !take(n); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never reached the spool (spool %v)", n, spooledSegments(f.Spool))
			}
		}
	}
	// The restart: recovery asks for names[2] again, no longer in the spool.
	os.Remove(dest)
	if _, err := f.Fetch(ctx, names[2], dest); err != nil {
		t.Fatal(err)
	}
	for _, n := range names[3:9] {
		ok := false
		for deadline := time.Now().Add(5 * time.Second); !ok && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			ok = take(n)
		}
		if !ok {
			plan, _ := os.ReadFile(filepath.Join(f.Spool, ".plan"))
			t.Fatalf("after the restart, %s never reached the spool (spool %v, plan %q, asked %s)", n, spooledSegments(f.Spool), plan, asked(f.Spool))
		}
		if b, _ := os.ReadFile(filepath.Join(pgwal, n)); !bytes.Equal(b, data[n]) {
			t.Fatalf("%s differs", n)
		}
	}
}

// flakyListing answers a listing of one name, and fails every wider one.
type flakyListing struct{ storage.Folder }

func (f flakyListing) Find(ctx context.Context, prefix string) ([]storage.Backup, error) {
	if len(prefix) < 24 {
		return nil, errors.New("503 SlowDown")
	}
	return f.Folder.Find(ctx, prefix)
}

// A segment found nowhere is the end of the WAL only if no later one is archived; when
// that cannot be asked, the answer is not "not found" (which ends recovery, perhaps at a
// hole) but a failure that stops it. (Found by a blind review.)
func TestFetchStopsWhenTheHoleCheckCannotAsk(t *testing.T) {
	loc, names, _ := archiveOf(t, 3)
	f := &Fetcher{Locations: []storage.Folder{flakyListing{loc}}}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	if _, err := f.Fetch(context.Background(), names[0], dest); err != nil {
		t.Fatalf("an archived segment: %v", err)
	}
	past := segment{tli: 1, seg: 4}.String()
	_, err := f.Fetch(context.Background(), past, dest)
	if errors.Is(err, ErrNotFound) || !errors.Is(err, ErrUnanswered) || !strings.Contains(err.Error(), "503 SlowDown") {
		t.Fatalf("past the end, later segments not listable: %v, want it unanswered (recovery stops)", err)
	}
}
