package wal

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// PostgreSQL asks restore_command for one segment at a time and waits for each: from a
// distant bucket, every segment costs a round trip or more. So after each segment the
// next ones are fetched ahead, by a process of its own, into a spool beside the
// destination (pg_wal/drconsole-prefetch: the same file system, so taking one is a
// rename), checked as any fetch is; pgBackRest's asynchronous archive-get and WAL-G's
// prefetch do the same. The spool holds at most Ahead segments, and is removed when
// recovery reaches the end of the archive.

// SpoolFor is the spool of a restore_command writing to dest.
func SpoolFor(dest string) string {
	return filepath.Join(filepath.Dir(dest), "drconsole-prefetch")
}

// takeSpooled moves a prefetched segment to dest, if the spool has it or a prefetch
// running now brings it: fetching it a second time beside the prefetch would only slow
// both.
func takeSpooled(spool, name, dest string) bool {
	if spool == "" {
		return false
	}
	deadline := time.Now().Add(inflightWait)
	for {
		err := os.Rename(filepath.Join(spool, name), dest)
		if err == nil {
			break
		}
		if !prefetching(spool, name) || time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d, err := os.Open(filepath.Dir(dest)); err == nil {
		d.Sync()
		d.Close()
	}
	return true
}

// prefetchJobs is how many segments are fetched at once ahead of recovery: enough to
// hide a distant bucket's latency, few enough to bound the memory (each download holds
// up to the location's concurrency × part size).
const prefetchJobs = 2

// inflightWait is how long a fetch waits for a segment a running prefetch may bring
// before it fetches it itself.
const inflightWait = 30 * time.Second

// prefetching reports whether a prefetch running now means to fetch name.
func prefetching(spool, name string) bool {
	plan, err := os.ReadFile(filepath.Join(spool, ".plan"))
	if err != nil || !slices.Contains(strings.Fields(string(plan)), name) {
		return false
	}
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

// Prefetch fetches the Ahead segments after name (of segSize bytes) into the spool, those
// it does not hold yet, and drops what recovery has passed. One prefetch runs at a time
// per spool (a lock); a second returns at once. Failures are left to the fetch that
// needs the segment: it tries again and reports them.
func (f *Fetcher) Prefetch(ctx context.Context, name string, segSize int64) error {
	s, ok := parseSegment(name)
	if !ok || f.Spool == "" || f.Ahead <= 0 {
		return nil
	}
	// The fetch that started this made the spool (MakeSpool); if it is gone, recovery
	// ended meanwhile and nothing is wanted any more.
	lock, err := os.OpenFile(filepath.Join(f.Spool, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil // another prefetch is under way
	}
	entries, _ := os.ReadDir(f.Spool)
	want := map[string]bool{}
	next := s
	var names []string
	for range f.Ahead {
		next = next.next(segSize)
		names = append(names, next.String())
		want[next.String()] = true
	}
	if err := os.WriteFile(filepath.Join(f.Spool, ".plan"), []byte(strings.Join(names, "\n")), 0o600); err != nil {
		return nil
	}
	for _, e := range entries {
		n := e.Name()
		if n != ".lock" && n != ".plan" && !want[n] {
			os.Remove(filepath.Join(f.Spool, n)) // passed, another timeline's, or a killed fetch's temporary file
		}
	}
	var mu sync.Mutex
	end := "" // the first segment found nowhere: nothing after it is fetched
	work := make(chan string)
	var wg sync.WaitGroup
	for range prefetchJobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				mu.Lock()
				stop := end != "" && n > end
				mu.Unlock()
				if stop {
					continue
				}
				err := f.fetchInto(ctx, n, filepath.Join(f.Spool, n))
				if errors.Is(err, ErrNotFound) || errors.Is(err, ErrHole) {
					mu.Lock()
					if end == "" || n < end {
						end = n
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(f.Spool, n)); err == nil {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		work <- n
	}
	close(work)
	wg.Wait()
	return nil
}

// fetchInto is Fetch without the spool and without a word: the prefetch's.
func (f *Fetcher) fetchInto(ctx context.Context, name, dest string) error {
	g := *f
	g.Spool, g.Said = "", nil
	_, err := g.Fetch(ctx, name, dest)
	return err
}

// MakeSpool makes the spool, before a prefetch is started into it.
func (f *Fetcher) MakeSpool() error {
	return os.MkdirAll(f.Spool, 0o700)
}

// dropSpool removes the spool: recovery has reached the end of the archive, or of its
// timeline (PostgreSQL looks for the next timeline's history file before it promotes).
// A prefetch still running finds it gone and stops.
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
