package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// rangeReader streams one object as concurrent ranged GETs handed over strictly in
// order. At most Concurrency parts exist at once, each in a buffer of PartSize bytes that
// is reused once read, so memory stays within Concurrency × PartSize. A part whose
// connection drops resumes from the byte it reached; every GET is pinned to the object
// version seen at open (If-Match on the ETag, and the response's ETag, size and
// modification time are checked), so an overwrite mid-read fails with ErrChanged.
type rangeReader struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	s      *S3
	key    string
	name   string
	pin    Backup // size, ETag and modification time at open
	size   int64
	psize  int64

	parts chan *part  // in object order
	bufs  chan []byte // buffers read to the end, free for the next part
	wg    sync.WaitGroup

	fatalMu sync.Mutex
	fatal   error // the first error that ends the whole stream (e.g. ErrChanged)

	cur    *part
	off    int
	err    error
	closed atomic.Bool
}

type part struct {
	start, end int64 // [start, end) of the object
	buf        []byte
	done       chan struct{}
	err        error
}

func newRangeReader(ctx context.Context, s *S3, key, name string, pin Backup) *rangeReader {
	ctx, cancel := context.WithCancelCause(ctx)
	o := s.opts
	r := &rangeReader{
		ctx: ctx, cancel: cancel, s: s, key: key, name: name, pin: pin,
		size: pin.Size, psize: o.PartSize,
		parts: make(chan *part, o.Concurrency),
		bufs:  make(chan []byte, o.Concurrency),
	}
	r.wg.Add(1)
	go r.schedule(o.Concurrency)
	return r
}

// schedule starts the fetch of each part in order, as soon as a buffer is free.
func (r *rangeReader) schedule(concurrency int) {
	defer r.wg.Done()
	defer close(r.parts)
	allocated := 0
	for start := int64(0); start < r.size; start += r.psize {
		var buf []byte
		if allocated < concurrency {
			buf = make([]byte, min(r.psize, r.size)) // a small object gets a small buffer
			allocated++
		} else {
			select {
			case buf = <-r.bufs:
			case <-r.ctx.Done():
				return
			}
		}
		end := min(start+r.psize, r.size)
		p := &part{start: start, end: end, buf: buf[:end-start], done: make(chan struct{})}
		r.wg.Add(1)
		go r.fetch(p)
		select {
		case r.parts <- p:
		case <-r.ctx.Done():
			return
		}
	}
}

func (r *rangeReader) Read(b []byte) (int, error) {
	for {
		if r.closed.Load() {
			return 0, errClosed
		}
		if r.err != nil {
			return 0, r.err
		}
		if r.cur == nil {
			var p *part
			var ok bool
			select {
			case p, ok = <-r.parts:
			case <-r.ctx.Done():
				r.err = r.stopped()
				continue
			}
			if !ok {
				if r.ctx.Err() != nil {
					r.err = r.stopped()
				} else {
					r.err = io.EOF
				}
				continue
			}
			select {
			case <-p.done:
			case <-r.ctx.Done():
				r.err = r.stopped()
				continue
			}
			if p.err != nil {
				if f := r.fatalErr(); f != nil {
					r.err = f
				} else {
					r.err = p.err
				}
				continue
			}
			r.cur, r.off = p, 0
		}
		n := copy(b, r.cur.buf[r.off:])
		r.off += n
		if r.off == len(r.cur.buf) {
			r.bufs <- r.cur.buf[:cap(r.cur.buf)] // never blocks: there are at most cap(bufs) buffers
			r.cur = nil
		}
		if n > 0 || len(b) == 0 {
			return n, nil
		}
	}
}

// stopped is the error a reader whose context ended reports: the stream's own failure if
// there was one, else why the context ended.
func (r *rangeReader) stopped() error {
	if f := r.fatalErr(); f != nil {
		return f
	}
	return context.Cause(r.ctx)
}

// errClosed is what reading a closed stream says.
var errClosed = errors.New("read of a closed backup stream")

// Close stops every fetch and waits for them to end.
func (r *rangeReader) Close() error {
	r.closed.Store(true)
	r.cancel(errClosed)
	r.wg.Wait()
	return nil
}

func (r *rangeReader) setFatal(err error) {
	r.fatalMu.Lock()
	if r.fatal == nil {
		r.fatal = err
	}
	r.fatalMu.Unlock()
	r.cancel(err) // no point fetching the rest
}

func (r *rangeReader) fatalErr() error {
	r.fatalMu.Lock()
	defer r.fatalMu.Unlock()
	return r.fatal
}

// fetch fills one part, resuming from the last byte received after a dropped connection
// or a server error, with doubling waits, and giving up after Retries attempts in a row
// that made no progress.
func (r *rangeReader) fetch(p *part) {
	defer r.wg.Done()
	defer close(p.done)
	o := r.s.opts
	got, fails, wait := 0, 0, o.Backoff
	for got < len(p.buf) {
		n, err := r.fetchOnce(p, got)
		got += n
		if err == nil {
			continue
		}
		if r.ctx.Err() != nil {
			p.err = r.stopped()
			return
		}
		var fe fatalError
		if errors.As(err, &fe) {
			p.err = fe.err
			r.setFatal(fe.err)
			return
		}
		if n > 0 {
			fails, wait = 0, o.Backoff
		}
		fails++
		if fails > o.Retries {
			p.err = fmt.Errorf("%w: read s3://%s/%s: gave up at byte %d after %d attempts: %v",
				ErrUnreachable, r.s.bucket, r.key, p.start+int64(got), fails, err)
			r.setFatal(p.err)
			return
		}
		select {
		case <-time.After(wait):
		case <-r.ctx.Done():
			p.err = r.stopped()
			return
		}
		wait = min(wait*2, 10*time.Second)
	}
}

// fatalError marks an error resuming cannot help with.
type fatalError struct{ err error }

func (f fatalError) Error() string { return f.err.Error() }

// noRetry leaves resuming to fetch, which knows the offset reached; the SDK's own retry
// would start the range again and spend its retry quota on cut connections.
func noRetry(o *s3.Options) { o.RetryMaxAttempts = 1 }

// fetchOnce makes one ranged GET for the rest of part p from offset got, and reads its
// body into the part's buffer. It returns how many bytes it added.
func (r *rangeReader) fetchOnce(p *part, got int) (int, error) {
	actx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	idle := time.AfterFunc(r.s.opts.IdleTimeout, cancel)
	defer idle.Stop()

	from, to := p.start+int64(got), p.end-1
	in := &s3.GetObjectInput{
		Bucket: &r.s.bucket,
		Key:    &r.key,
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", from, to)),
	}
	if r.pin.ETag != "" {
		in.IfMatch = aws.String(r.pin.ETag)
	}
	out, err := r.s.client.GetObject(actx, in, r.s.regionOpt, noRetry)
	if err != nil {
		return 0, r.classify(err)
	}
	defer out.Body.Close()
	if err := r.checkIdentity(out, from, to); err != nil {
		return 0, fatalError{err}
	}
	n := 0
	want := p.buf[got:]
	for n < len(want) {
		m, err := out.Body.Read(want[n:])
		n += m
		if m > 0 {
			idle.Reset(r.s.opts.IdleTimeout)
		}
		if err == io.EOF && n < len(want) {
			return n, io.ErrUnexpectedEOF
		}
		if err != nil && err != io.EOF {
			return n, err
		}
	}
	return n, nil
}

// checkIdentity refuses a response for another version of the object than the pinned one,
// or for other bytes than those asked for.
func (r *rangeReader) checkIdentity(out *s3.GetObjectOutput, from, to int64) error {
	changed := func(what string) error {
		return fmt.Errorf("%w: %s (s3://%s/%s: %s)", ErrChanged, r.name, r.s.bucket, r.key, what)
	}
	if r.pin.ETag != "" && out.ETag != nil && normETag(*out.ETag) != normETag(r.pin.ETag) {
		return changed("its ETag changed")
	}
	if r.pin.ETag == "" && out.LastModified != nil && !r.pin.Modified.IsZero() &&
		!out.LastModified.Truncate(time.Second).Equal(r.pin.Modified.Truncate(time.Second)) {
		return changed("its modification time changed")
	}
	cr := aws.ToString(out.ContentRange) // bytes FROM-TO/TOTAL
	if cr == "" {
		if from == 0 && aws.ToInt64(out.ContentLength) == r.size && to == r.size-1 {
			return nil // a whole-object answer to a whole-object range
		}
		return fmt.Errorf("s3://%s/%s: the store ignored the Range header; cannot stream it in parts (set concurrency 1 and a part size larger than the backup)", r.s.bucket, r.key)
	}
	var gotFrom, gotTo int64
	var total string
	if _, err := fmt.Sscanf(strings.Replace(cr, "/", " ", 1), "bytes %d-%d %s", &gotFrom, &gotTo, &total); err != nil {
		return fmt.Errorf("s3://%s/%s: unreadable Content-Range %q", r.s.bucket, r.key, cr)
	}
	if t, err := strconv.ParseInt(total, 10, 64); err == nil && t != r.size {
		return changed(fmt.Sprintf("its size is now %d bytes, was %d", t, r.size))
	}
	if gotFrom != from || gotTo != to {
		return fmt.Errorf("s3://%s/%s: asked for bytes %d-%d, got %d-%d", r.s.bucket, r.key, from, to, gotFrom, gotTo)
	}
	return nil
}

// classify says whether a failed GET is worth resuming.
func (r *rangeReader) classify(err error) error {
	status := 0
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		status = re.Response.StatusCode
	}
	var ae smithy.APIError
	code := ""
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	switch {
	case status == http.StatusPreconditionFailed || code == "PreconditionFailed":
		return fatalError{fmt.Errorf("%w: %s (s3://%s/%s was overwritten)", ErrChanged, r.name, r.s.bucket, r.key)}
	case status == http.StatusNotFound || code == "NoSuchKey":
		return fatalError{fmt.Errorf("%w: %s (s3://%s/%s is gone: %w)", ErrNotFound, r.name, r.s.bucket, r.key, ErrChanged)}
	case status == http.StatusRequestedRangeNotSatisfiable || code == "InvalidRange":
		return fatalError{fmt.Errorf("%w: %s (s3://%s/%s shrank)", ErrChanged, r.name, r.s.bucket, r.key)}
	case status >= 500, status == http.StatusTooManyRequests, status == http.StatusRequestTimeout,
		code == "SlowDown", code == "RequestTimeout", code == "InternalError":
		return err
	case status != 0:
		return fatalError{r.s.fail(r.key, err)}
	}
	return err // no answer at all: connection refused, reset or timed out
}
