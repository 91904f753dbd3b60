package wal

import (
	"context"
	"errors"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"drconsole/storage"
)

// PostgreSQL asks restore_command for one segment at a time and waits for each: from a
// distant bucket, every segment costs a round trip or more. So after each segment the
// next ones are fetched ahead, by a process of its own, into a spool beside the
// destination (pg_wal/drconsole-prefetch: the same file system, so taking one is a
// hard link), checked as any fetch is; pgBackRest's asynchronous archive-get and WAL-G's
// prefetch do the same. The spool holds the segment recovery asked for last, the one
// before it and at most Ahead after it, and is removed when recovery looks for a new
// timeline, as it does before it promotes.

// RestoreCommand is the restore_command drconsole configures around fetch (a wal-fetch
// command line ending in %f %p): a segment already in the spool is taken with ln, which
// costs recovery a millisecond where starting wal-fetch costs it tens; anything else,
// and every failure, is wal-fetch's. A spooled segment was checked before it was spooled,
// and only a whole one is ever there (renamed in once written and synced). The spool is
// pg_wal's, as %p is in pg_wal. A link, not a move, because recovery reads its last
// segment a second time as it ends, and the spool still has it then.
func RestoreCommand(fetch string) string {
	return "ln -f pg_wal/drconsole-prefetch/%f %p 2>/dev/null || " + fetch
}

// SpoolFor is the spool of a restore_command writing to dest.
func SpoolFor(dest string) string {
	return filepath.Join(filepath.Dir(dest), "drconsole-prefetch")
}

// TakeSpooled tells a running prefetch that recovery now asks for name, and links the
// segment to dest if the spool has it or the prefetch is bringing it: fetching it a second
// time beside the prefetch would only slow both. A spooled segment was checked as any
// fetch checks it before it was spooled, so taking it needs neither the keys nor the
// locations: restore_command does this first.
func (f *Fetcher) TakeSpooled(name, dest string) bool {
	if f.Spool == "" {
		return false
	}
	if k, err := Kind(name); err != nil || k != KindSegment {
		return false
	}
	if _, err := os.Stat(f.Spool); err != nil {
		return false
	}
	ask(f.Spool, name)
	deadline := time.Now().Add(inflightWait)
	for {
		if linkTo(filepath.Join(f.Spool, name), dest) == nil {
			break
		}
		if !prefetching(f.Spool, name) || time.Now().After(deadline) {
			// It may have landed between the two looks: a segment leaves the plan
			// once it is in the spool.
			if linkTo(filepath.Join(f.Spool, name), dest) != nil {
				return false
			}
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d, err := os.Open(filepath.Dir(dest)); err == nil {
		d.Sync()
		d.Close()
	}
	return true
}

// linkTo makes dest another name of the file src, replacing whatever dest was at once.
func linkTo(src, dest string) error {
	tmp := filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+".drconsole-link")
	os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dest); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// ask records in the spool the segment recovery asks for now: the prefetch keeps the
// Ahead segments after it.
func ask(spool, name string) {
	writeWhole(filepath.Join(spool, ".asked"), name)
}

// writeWhole replaces a small file in the spool at once: a reader sees the old content
// or the new, never an empty file.
func writeWhole(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// asked is the segment recovery asked for last, "" if none is recorded.
func asked(spool string) string {
	b, _ := os.ReadFile(filepath.Join(spool, ".asked"))
	if _, ok := parseSegment(string(b)); !ok {
		return ""
	}
	return string(b)
}

// prefetchJobs is how many segments are fetched at once ahead of recovery: enough to
// hide a distant bucket's latency, few enough to bound the memory (each download holds
// up to the location's concurrency × part size).
const prefetchJobs = 3

// inflightWait is how long a fetch waits for a segment a running prefetch may bring
// before it fetches it itself.
const inflightWait = 30 * time.Second

// prefetchIdle is how long a prefetch waits for recovery to ask for another segment
// before it ends (recovery paused, stopped, or waits for the archive to grow); the next
// fetch starts another.
const prefetchIdle = 15 * time.Second

// prefetchPoll is how often a prefetch looks at what recovery asked for.
const prefetchPoll = 10 * time.Millisecond

// Prefetching reports whether a prefetch is running on spool.
func Prefetching(spool string) bool {
	lock, err := os.Open(filepath.Join(spool, ".lock"))
	if err != nil {
		return false
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	return false
}

// prefetching reports whether a prefetch running now means to fetch name.
func prefetching(spool, name string) bool {
	plan, err := os.ReadFile(filepath.Join(spool, ".plan"))
	if err != nil || !slices.Contains(strings.Fields(string(plan)), name) {
		return false
	}
	return Prefetching(spool)
}

// Prefetch keeps the Ahead segments (of segSize bytes) after the one recovery asked for
// last (name, until a fetch records another or recovery links one) in the spool,
// fetching those it does not hold yet, prefetchJobs at a time, and dropping what
// recovery has passed. It runs as long as recovery asks for segments: until the spool is
// removed (recovery ended), ctx ends, or nothing new is asked for Idle (default
// prefetchIdle; what it spooled stays for the next fetch, which starts another). One
// prefetch runs at a time per spool (a lock); a second returns at once. A segment it
// cannot fetch is left to the fetch that needs it: that one tries again and reports why.
func (f *Fetcher) Prefetch(ctx context.Context, name string, segSize int64) error {
	if _, ok := parseSegment(name); !ok || f.Spool == "" || f.Ahead <= 0 {
		return nil
	}
	// The fetch that started this made the spool (MakeSpool); if it is gone, recovery
	// ended meanwhile and nothing is wanted any more.
	lock, err := os.OpenFile(filepath.Join(f.Spool, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil
	}
	defer lock.Close()
	// A fetch looking whether a prefetch runs holds the lock shared for a moment; another
	// prefetch holds it for as long as it runs.
	for try := 0; syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil; try++ {
		if try == 5 {
			return nil // another prefetch is under way
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(ctx)
	type result struct {
		name string
		err  error
	}
	done := make(chan result, prefetchJobs)
	pf := f.prefetcher()
	inflight := map[string]bool{}
	defer func() {
		cancel()
		for range inflight {
			<-done
		}
	}()
	idle := f.Idle
	if idle <= 0 {
		idle = prefetchIdle
	}
	removeStale(filepath.Join(f.Spool, ".*.drconsole-*")) // a killed prefetch's temporary files
	lastAsk := asked(f.Spool)
	if lastAsk != "" {
		name = lastAsk
	}
	last, since := name, time.Now()
	// Segments this prefetch spooled and has not removed: one linked elsewhere (a
	// second name: RestoreCommand's ln) or gone from the spool (a restore_command
	// written with mv) was taken by recovery, which says so no other way.
	spooled := map[string]bool{}
	// When recovery last asked through wal-fetch: only a link made after it is recovery
	// moving on. One made before it may be from before the server restarted, recovery
	// having gone back since to its last restartpoint.
	var askedAt time.Time
	dropped := map[string]bool{} // removed before their downloads ended
	failed := map[string]bool{}  // not to be tried again until recovery moves on
	end := ""                    // the first segment found nowhere: nothing after it is fetched
	plan := ""
	tick := time.NewTicker(prefetchPoll)
	defer tick.Stop()
	for {
		if _, err := os.Stat(f.Spool); err != nil {
			return nil
		}
		moved := func(to string) {
			last, since = to, time.Now()
			clear(failed)
			end = ""
		}
		if a := asked(f.Spool); a != "" && a != lastAsk {
			lastAsk = a
			if st, err := os.Stat(filepath.Join(f.Spool, ".asked")); err == nil {
				askedAt = st.ModTime()
			}
			moved(a)
		}
		entries, _ := os.ReadDir(f.Spool)
		have := map[string]bool{}
		for _, e := range entries {
			if n := e.Name(); !strings.HasPrefix(n, ".") {
				have[n] = true
			}
		}
		for n := range spooled {
			switch {
			case !have[n]:
				delete(spooled, n)
				if n > last {
					moved(n)
				}
			case n > last && linkedSince(filepath.Join(f.Spool, n), askedAt):
				moved(n)
			}
		}
		if len(inflight) == 0 && time.Since(since) > idle {
			return nil
		}
		// The segment asked for stays until the fetch takes it, and the one before it:
		// at the end of the archive recovery asks for the next (found nowhere), then
		// reads its last segment again. The Ahead after it are wanted.
		s, _ := parseSegment(last)
		keep := map[string]bool{last: true}
		if p, ok := s.prev(segSize); ok {
			keep[p.String()] = true
		}
		var want []string
		for range f.Ahead {
			s = s.next(segSize)
			n := s.String()
			keep[n] = true
			if !failed[n] && (end == "" || n < end) {
				want = append(want, n)
			}
		}
		for n := range have {
			if !keep[n] {
				os.Remove(filepath.Join(f.Spool, n)) // passed, or another timeline's
				delete(have, n)
				delete(spooled, n)
				if inflight[n] {
					// Its file landed, but its download has not said so yet: it
					// must not count as spooled, then as taken when it is not here.
					dropped[n] = true
				}
			}
		}
		var todo, planned []string
		for n := range inflight {
			planned = append(planned, n)
		}
		for _, n := range want {
			if !have[n] && !inflight[n] {
				todo = append(todo, n)
				planned = append(planned, n)
			}
		}
		// The plan first: a fetch waits for a segment only while it is planned.
		slices.Sort(planned)
		if p := strings.Join(planned, "\n"); p != plan {
			if writeWhole(filepath.Join(f.Spool, ".plan"), p) != nil {
				return nil
			}
			plan = p
		}
		for _, n := range todo {
			if len(inflight) >= prefetchJobs {
				break
			}
			inflight[n] = true
			go func() {
				_, err := pf.Fetch(ctx, n, filepath.Join(f.Spool, n))
				done <- result{n, err}
			}()
		}
		select {
		case r := <-done:
			delete(inflight, r.name)
			switch {
			case dropped[r.name]:
				delete(dropped, r.name) // landed, and removed before its download ended
			case r.err == nil:
				spooled[r.name] = true
			case errors.Is(r.err, ErrNotFound) || errors.Is(r.err, ErrHole):
				if end == "" || r.name < end {
					end = r.name
				}
			default:
				failed[r.name] = true
			}
		case <-tick.C:
		case <-ctx.Done():
			return nil
		}
	}
}

// linkedSince reports whether the file has another name too, given to it after t (a
// new link changes the file's ctime).
func linkedSince(path string, t time.Time) bool {
	var st syscall.Stat_t
	return syscall.Stat(path, &st) == nil && st.Nlink > 1 && time.Unix(st.Ctim.Unix()).After(t)
}

// EndPrefetch removes the spool of the server on pgdata, stopped or failed, and waits for
// a prefetch still running there to end: it would otherwise write into the data directory
// while the caller removes it.
func EndPrefetch(pgdata string) {
	spool := filepath.Join(pgdata, "pg_wal", "drconsole-prefetch")
	lock, err := os.Open(filepath.Join(spool, ".lock"))
	if err != nil {
		return
	}
	defer lock.Close()
	(&Fetcher{Spool: spool}).dropSpool()
	// The lock outlives its name: it is free once the prefetch has seen the spool gone
	// and its downloads ended.
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Flock(int(lock.Fd()), syscall.LOCK_SH|syscall.LOCK_NB) != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	os.RemoveAll(spool) // what it wrote meanwhile
}

// prefetcher is f as the prefetch fetches: without the spool, without a word, each
// location listed a window of segments at a time.
func (f *Fetcher) prefetcher() *Fetcher {
	g := *f
	g.Spool, g.Said = "", nil
	g.Locations = nil
	for _, w := range f.Locations {
		g.Locations = append(g.Locations, &windowFolder{Folder: w, listed: map[string][]storage.Backup{}})
	}
	return &g
}

// windowFolder lists a location's WAL archive for the prefetch sixteen segments at a
// time (the names sharing all but their last digit): one LIST for each sixteen segments
// instead of one a segment, which a bucket bills twelve times a GET and answers slower.
// A segment its last listing does not hold is listed again, so it never says "not
// archived" from memory.
type windowFolder struct {
	storage.Folder
	mu     sync.Mutex
	listed map[string][]storage.Backup // by window: a segment name but its last digit
}

func (w *windowFolder) Find(ctx context.Context, prefix string) ([]storage.Backup, error) {
	if _, ok := parseSegment(prefix); !ok {
		return w.Folder.Find(ctx, prefix)
	}
	window := prefix[:len(prefix)-1]
	w.mu.Lock()
	objs, ok := w.listed[window]
	w.mu.Unlock()
	if ok {
		if got := named(objs, prefix); len(got) > 0 {
			return got, nil
		}
	}
	objs, err := w.Folder.Find(ctx, window)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	for k := range w.listed {
		if k < window {
			delete(w.listed, k) // recovery has passed it
		}
	}
	w.listed[window] = objs
	w.mu.Unlock()
	return named(objs, prefix), nil
}

// named are the files of objs whose names start with prefix.
func named(objs []storage.Backup, prefix string) []storage.Backup {
	var got []storage.Backup
	for _, o := range objs {
		if strings.HasPrefix(path.Base(o.Key), prefix) {
			got = append(got, o)
		}
	}
	return got
}

// MakeSpool makes the spool, before a prefetch is started into it.
func (f *Fetcher) MakeSpool() error {
	return os.MkdirAll(f.Spool, 0o700)
}

// dropSpool removes the spool: recovery has ended (PostgreSQL looks for the next
// timeline's history file before it promotes). A prefetch still running finds it gone
// and stops.
func (f *Fetcher) dropSpool() {
	if f.Spool == "" || !strings.HasSuffix(f.Spool, "drconsole-prefetch") {
		return
	}
	for range 5 {
		if os.RemoveAll(f.Spool) == nil {
			return
		}
		time.Sleep(20 * time.Millisecond) // a prefetch wrote a file meanwhile
	}
}
