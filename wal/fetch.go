package wal

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"

	"drconsole/recovery"
	"drconsole/storage"
)

var (
	// ErrNotFound: no location holds the file, and every location answered. The one
	// failure restore_command may report as "not there" (PostgreSQL then ends recovery).
	ErrNotFound = errors.New("not in the archive")
	// ErrHole: a segment is missing although later ones of its timeline are archived.
	// Taking it for the end of the WAL would end recovery early, losing what follows.
	ErrHole = errors.New("missing from the archive")
	// ErrDamaged: every copy found failed its checks.
	ErrDamaged = errors.New("damaged in the archive")
	// ErrUnanswered: not found where asked, and a location could not be asked.
	ErrUnanswered = errors.New("not found, and not every location could be asked")
)

// Fetcher restores WAL files from the archive: restore_command.
type Fetcher struct {
	Locations []storage.Folder // in order of preference
	Keys      *recovery.Keys
	// Said is told what the operator should know although the fetch succeeded: a
	// location skipped, a damaged copy passed over.
	Said func(string)
	// Spool is where segments fetched ahead are kept (SpoolFor); "" for none. Ahead is
	// how many segments Prefetch fetches ahead.
	Spool string
	Ahead int
	// Idle is how long a prefetch runs without recovery asking for a new segment
	// (default prefetchIdle).
	Idle time.Duration
	// Header, if set, is told the segment size a segment's first page gives, as soon as
	// it is decoded (before the rest is, or checked): when to start the prefetch.
	Header func(segSize int64)
}

func (f *Fetcher) say(format string, args ...any) {
	if f.Said != nil {
		f.Said(fmt.Sprintf(format, args...))
	}
}

// Fetch writes WAL file name to dest, whole (written to a temporary file beside it,
// synced, then renamed), and returns the location that served it.
func (f *Fetcher) Fetch(ctx context.Context, name, dest string) (string, error) {
	kind, err := Kind(name)
	if err != nil {
		return "", err
	}
	if kind == KindSegment && f.TakeSpooled(name, dest) {
		return "prefetched", nil
	}
	// A segment a running prefetch neither holds nor means to fetch is most likely past
	// the end of the archive: whether a later one is archived (a hole, not the end) is
	// asked at once, beside the segment itself, rather than after it.
	later := func() (string, error) { return laterSegment(ctx, f.Locations, name) }
	if kind == KindSegment && f.Spool != "" && Prefetching(f.Spool) {
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var next string
		var listErr error
		done := make(chan struct{})
		go func() { next, listErr = laterSegment(lctx, f.Locations, name); close(done) }()
		later = func() (string, error) { <-done; return next, listErr }
	}
	var unreachable, damaged []string
	var answered []storage.Folder
	for _, w := range f.Locations {
		objs, err := w.Find(ctx, name)
		if err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			unreachable = append(unreachable, w.Name()+" ("+oneLine(err)+")")
			continue
		}
		answered = append(answered, w)
		for _, o := range candidates(objs, name) {
			err := fetchOne(ctx, w, o, name, dest, f.Keys, f.Header)
			if err == nil {
				if len(unreachable) > 0 || len(damaged) > 0 {
					f.say("%s served by %s; %s", name, w.Name(), strings.Join(append(unreachable, damaged...), "; "))
				}
				return w.Name(), nil
			}
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			damaged = append(damaged, fmt.Sprintf("%s in %s: %s", path.Base(o.Key), w.Name(), oneLine(err)))
		}
	}
	switch {
	case len(damaged) > 0:
		return "", fmt.Errorf("%w: %s", ErrDamaged, strings.Join(damaged, "; "))
	case len(unreachable) > 0:
		where := "no location"
		if len(answered) > 0 {
			var names []string
			for _, w := range answered {
				names = append(names, w.Name())
			}
			where = strings.Join(names, ", ")
		}
		return "", fmt.Errorf("%w: %s is not in %s, and %s could not be asked; recovery stops rather than end early (to end it without them, name the locations that answer with --location)",
			ErrUnanswered, name, where, strings.Join(unreachable, ", "))
	}
	next, err := later()
	switch {
	case next != "":
		return "", fmt.Errorf("%w: %s is not archived, but %s is: the archive has a hole here, and recovery stops rather than end early at it", ErrHole, name, next)
	case err != nil:
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("%w: %s is not archived, but whether later segments are could not be asked (%s); recovery stops rather than end early at what may be a hole",
			ErrUnanswered, name, oneLine(err))
	}
	if kind == KindHistory {
		// A new timeline looked for and none found: recovery ends (PostgreSQL does this
		// before it promotes). Not at a segment found nowhere: recovery then reads its
		// last segment once more, and the spool still holds it.
		f.dropSpool()
	}
	return "", fmt.Errorf("%w: %s", ErrNotFound, name)
}

// candidates are the archived copies of name, drconsole's (checksummed) first.
func candidates(objs []storage.Backup, name string) []storage.Backup {
	var ours, theirs []storage.Backup
	for _, o := range objs {
		st, ok := parseStored(path.Base(o.Key), name)
		switch {
		case !ok:
		case st.sum != "":
			ours = append(ours, o)
		default:
			theirs = append(theirs, o)
		}
	}
	return append(ours, theirs...)
}

// laterSegment is an archived segment of name's timeline after it, if any: name is then a
// hole, not the end of the WAL.
func laterSegment(ctx context.Context, locs []storage.Folder, name string) (string, error) {
	s, ok := parseSegment(name)
	if !ok {
		return "", nil
	}
	// Every location's listings at once: restore_command's "not found" waits for them,
	// and so does recovery's end. A listing that fails leaves the answer unknown: it
	// must not read as "no later segment", which would end recovery at a hole.
	var mu sync.Mutex
	var wg sync.WaitGroup
	first := ""
	var failed error
	for _, w := range locs {
		for _, prefix := range []string{name[:16], fmt.Sprintf("%08X%08X", s.tli, s.log+1)} {
			wg.Go(func() {
				objs, err := w.Find(ctx, prefix)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed = fmt.Errorf("%s: %v", w.Name(), err)
					return
				}
				for _, o := range objs {
					b := path.Base(o.Key)
					if len(b) >= 24 && segmentRE.MatchString(b[:24]) && b[:24] > name {
						if _, ok := parseStored(b, b[:24]); ok && (first == "" || b[:24] < first) { // a copy of that segment, not a .backup or .partial
							first = b[:24]
						}
					}
				}
			})
		}
	}
	wg.Wait()
	if first != "" {
		return first, nil
	}
	return "", failed
}

// fetchOne decodes one archived copy into dest and checks it: whole (decoded.check), and
// a segment's header.
func fetchOne(ctx context.Context, w storage.Folder, o storage.Backup, name, dest string, keys *recovery.Keys, header func(int64)) error {
	st, _ := parseStored(path.Base(o.Key), name)
	dir := filepath.Dir(dest)
	pattern := "." + filepath.Base(dest) + ".drconsole-*"
	removeStale(filepath.Join(dir, pattern))
	tmp, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return fmt.Errorf("%w: %v", errLocal, err)
	}
	// Locked while it is written: the lock dies with this process, however it dies, so
	// the next fetch knows a temporary file nobody holds is a killed fetch's.
	if err := syscall.Flock(int(tmp.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("%w: %v", errLocal, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	got, err := decodeTo(ctx, w, o, keys, tmp, header)
	if err != nil {
		return err
	}
	if err := got.check(name, st); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("%w: %v", errLocal, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%w: %v", errLocal, err)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return fmt.Errorf("%w: %v", errLocal, err)
	}
	done = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// removeStale removes the temporary files matching glob that no fetch holds: a killed
// fetch's, which would otherwise stay in pg_wal for good.
func removeStale(glob string) {
	files, _ := filepath.Glob(glob)
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		if syscall.Flock(int(fh.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			os.Remove(f)
		}
		fh.Close()
	}
}

// errLocal: writing on this machine failed, not the archive.
var errLocal = errors.New("writing the WAL file")

// decoded is what a copy decoded to.
type decoded struct {
	size int64
	// sum is the content's SHA-256, taken only when no layer checked the content on the
	// way (checked says which did).
	sum     []byte
	checked string
	head    []byte
	data    []byte // readAll only
}

// check compares the content with the SHA-256 its stored name carries, unless a layer
// already proved it is what was archived: OpenPGP's MDC covers every byte of what was
// encrypted (here, the compressed segment), so it catches the damage the SHA-256 would,
// and hashing 16 MiB was a third of a prefetch's CPU. The segment's header is checked
// whatever the layers.
func (d decoded) check(name string, st stored) error {
	if st.sum != "" && d.checked == "" && hex.EncodeToString(d.sum)[:sumLen] != st.sum {
		return fmt.Errorf("its content is not what was archived (SHA-256 %s…, archived %s…)", hex.EncodeToString(d.sum)[:12], st.sum[:12])
	}
	return checkSegment(name, d.head, d.size)
}

// decodeTo streams an archived copy into out, peeling its layers by content, and
// returns its size, first bytes, and either what checked it on the way or its SHA-256.
// header, if not nil, is told a segment's size as soon as its first page says it.
func decodeTo(ctx context.Context, w storage.Folder, o storage.Backup, keys *recovery.Keys, out io.Writer, header func(int64)) (decoded, error) {
	rc, err := w.Open(ctx, o)
	if err != nil {
		return decoded{}, err
	}
	defer rc.Close()
	r, closeAll, checked, err := peel(rc, keys)
	if err != nil {
		return decoded{}, err
	}
	defer closeAll()
	hw := &headWriter{header: header}
	if checked == "" {
		hw.h = sha256.New()
	}
	n, err := io.Copy(io.MultiWriter(out, hw), r)
	if err != nil {
		return decoded{}, err
	}
	d := decoded{size: n, checked: checked, head: hw.head}
	if hw.h != nil {
		d.sum = hw.h.Sum(nil)
	}
	return d, nil
}

// readAll decodes an archived copy into memory.
func readAll(ctx context.Context, w storage.Folder, o storage.Backup, keys *recovery.Keys) (decoded, error) {
	var buf strings.Builder
	d, err := decodeTo(ctx, w, o, keys, &buf, nil)
	d.data = []byte(buf.String())
	return d, err
}

// headWriter keeps the first headerLen bytes written, and hashes them all with h if
// there is one.
type headWriter struct {
	h      hash.Hash
	head   []byte
	header func(segSize int64)
}

func (w *headWriter) Write(p []byte) (int, error) {
	if len(w.head) < headerLen {
		w.head = append(w.head, p[:min(len(p), headerLen-len(w.head))]...)
		if len(w.head) == headerLen && w.header != nil {
			if size := headerSegSize(w.head); size > 0 {
				w.header(size)
			}
		}
	}
	if w.h == nil {
		return len(p), nil
	}
	return w.h.Write(p)
}

// zstdDecoders are decoders a fetch has finished with: a prefetch decodes one segment
// after another, and a new decoder's buffers cost it more than the decoding.
var zstdDecoders sync.Pool

func zstdDecoder(r io.Reader) (*zstd.Decoder, error) {
	if z, ok := zstdDecoders.Get().(*zstd.Decoder); ok {
		if err := z.Reset(r); err == nil {
			return z, nil
		}
		z.Close()
	}
	return zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
}

// peel takes off encryption and compression, as many layers as there are (at most
// three: OpenPGP, then gzip or zstd), deciding by the bytes, not the name. checked names
// the layer that will have proved the content whole once it is read to its end without
// an error, "" if none will: OpenPGP, as go-crypto refuses a message without an MDC or
// AEAD. (A zstd frame's checksum, which the decoder checks, is not enough alone: a stream
// of several frames need not carry one in each.)
func peel(r io.Reader, keys *recovery.Keys) (_ io.Reader, _ func(), checked string, _ error) {
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	for range 3 {
		br := bufio.NewReader(r)
		head, _ := br.Peek(storage.SniffLen)
		switch storage.Sniff(head) {
		case storage.LayerOpenPGP:
			if keys == nil {
				keys = &recovery.Keys{}
			}
			d, err := recovery.Decrypt(br, keys)
			if err != nil {
				closeAll()
				return nil, nil, "", err
			}
			checked = "OpenPGP's MDC"
			r = d
		case storage.LayerGzip:
			z, err := gzip.NewReader(br)
			if err != nil {
				closeAll()
				return nil, nil, "", fmt.Errorf("gzip: %v", err)
			}
			closers = append(closers, func() { z.Close() })
			r = z
		case storage.LayerZstd:
			z, err := zstdDecoder(br)
			if err != nil {
				closeAll()
				return nil, nil, "", fmt.Errorf("zstd: %v", err)
			}
			closers = append(closers, func() {
				if z.Reset(nil) == nil {
					zstdDecoders.Put(z)
				}
			})
			r = z
		default:
			return br, closeAll, checked, nil
		}
	}
	return r, closeAll, checked, nil
}
