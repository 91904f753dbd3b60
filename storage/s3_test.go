package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"drconsole/internal/s3test"
)

func TestS3ListsTheRunbookLayoutAcrossPages(t *testing.T) {
	srv, loc := newBucket(t, "")
	const n = 10_000
	for i := range n {
		day := time.Date(2020, 1, 1, 2, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour)
		srv.PutObject(t, "backups", "postgres/full/spywatcher_full_"+day.Format("20060102_150405")+".dump.gz", []byte{byte(i)})
	}
	srv.PutObject(t, "backups", "postgres/incremental/spywatcher_incremental_20240101_000000.dump.gz", []byte("i"))
	srv.PutObject(t, "backups", "postgres/full/", nil) // a folder marker some consoles create
	srv.PutObject(t, "backups", "elsewhere/README", []byte("?"))
	for _, seg := range []string{"000000010000000000000001", "000000010000000000000002"} {
		srv.PutObject(t, "backups", "wal/"+seg, []byte("wal"))
	}

	start := time.Now()
	bs, err := loc.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("listed %d objects in %v", len(bs), time.Since(start))
	if len(bs) != n+2 {
		t.Fatalf("listed %d backups, want %d (WAL and folder markers excluded)", len(bs), n+2)
	}
	if bs[0].Name != "elsewhere/README"[len("elsewhere/"):] || bs[0].Kind != KindUnknown {
		t.Errorf("newest (by upload time) = %+v; want the unknown README", bs[0])
	}
	if bs[1].Key != "postgres/incremental/spywatcher_incremental_20240101_000000.dump.gz" {
		t.Errorf("newest backup = %s", bs[1].Key)
	}
	newestFull := time.Date(2020, 1, 1, 2, 0, 0, 0, time.UTC).Add((n - 1) * time.Hour).Format("20060102_150405")
	if bs[2].Kind != KindFull || bs[2].Key != "postgres/full/spywatcher_full_"+newestFull+".dump.gz" {
		t.Errorf("newest full backup = %s", bs[2].Key)
	}
	for _, b := range bs {
		if strings.HasPrefix(b.Key, "wal/") {
			t.Fatalf("a WAL segment was listed as a backup: %s", b.Key)
		}
	}
	name, when, err := loc.LatestWAL(context.Background())
	if err != nil || name != "000000010000000000000002" || when.IsZero() {
		t.Errorf("LatestWAL = %q, %v, %v", name, when, err)
	}
}

func TestS3LatestWALOfAnEmptyArchive(t *testing.T) {
	_, loc := newBucket(t, "")
	if _, _, err := loc.LatestWAL(context.Background()); !errors.Is(err, ErrNotFound) {
		t.Errorf("LatestWAL of an empty bucket: %v; want ErrNotFound", err)
	}
}

// TestS3StreamResumesThroughFaults cuts connections mid-part and answers 503s; every byte
// must still arrive once, in order, resumed from the offset reached.
func TestS3StreamResumesThroughFaults(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "backups")
	proxy := s3test.StartProxy(t, srv.Endpoint)
	loc := openS3(t, "primary", proxy.Endpoint, "backups", "")
	data := randomBytes(3<<20+777, 7)
	key := "postgres/full/spywatcher_full_20240125_120000.dump.gz"
	srv.PutObject(t, "backups", key, data)

	b, err := loc.Stat(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	proxy.CutAfter(10_000, 6)
	proxy.Fail503(4)
	got, err := readAll(t, loc, b)
	if err != nil {
		t.Fatalf("read through faults: %v", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("resumed stream differs: %d bytes, want %d", len(got), len(data))
	}
	st := proxy.Stats()
	if st.Cut != 6 || st.Answered != 4 {
		t.Errorf("proxy cut %d and failed %d requests; the test wants 6 and 4", st.Cut, st.Answered)
	}
	resumed := 0
	for _, r := range proxy.Requests() {
		if r.Method != http.MethodGet || r.Range == "" {
			continue
		}
		if r.IfMatch == "" {
			t.Errorf("ranged GET %s without If-Match", r.Range)
		}
		var from, to int64
		fmt.Sscanf(r.Range, "bytes=%d-%d", &from, &to)
		if from%loc.opts.PartSize != 0 {
			resumed++
		}
	}
	if resumed == 0 {
		t.Error("no GET resumed mid-part")
	}
}

func TestS3StreamGivesUpAfterBoundedRetries(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "backups")
	proxy := s3test.StartProxy(t, srv.Endpoint)
	loc := openS3(t, "primary", proxy.Endpoint, "backups", "")
	srv.PutObject(t, "backups", "postgres/full/x.dump", randomBytes(200_000, 8))
	b, err := loc.Stat(context.Background(), "x.dump")
	if err != nil {
		t.Fatal(err)
	}
	proxy.Fail503(1000)
	_, err = readAll(t, loc, b)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "gave up") {
		t.Errorf("read against a failing server: %v", err)
	}
}

// TestS3OverwriteMidDownload replaces the object after the first part was read: the rest
// must not be spliced from the new object.
func TestS3OverwriteMidDownload(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "backups")
	proxy := s3test.StartProxy(t, srv.Endpoint)
	loc := openS3(t, "primary", proxy.Endpoint, "backups", "", WithTuning(func(o *S3Options) {
		o.PartSize, o.Concurrency = 64<<10, 2
	}))
	key := "postgres/full/spywatcher_full_20240125_120000.dump.gz"
	srv.PutObject(t, "backups", key, randomBytes(1<<20, 9))
	b, err := loc.Stat(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := loc.Open(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	srv.PutObject(t, "backups", key, randomBytes(1<<20, 10)) // same size, other bytes
	_, err = io.Copy(io.Discard, rc)
	if !errors.Is(err, ErrChanged) {
		t.Fatalf("read across an overwrite: %v; want ErrChanged", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
}

func TestS3CloseStopsEveryFetch(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "backups")
	proxy := s3test.StartProxy(t, srv.Endpoint)
	proxy.SetLatency(50 * time.Millisecond)
	loc := openS3(t, "primary", proxy.Endpoint, "backups", "")
	srv.PutObject(t, "backups", "postgres/full/x.dump", randomBytes(2<<20, 11))
	b, err := loc.Stat(context.Background(), "x.dump")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		rc, err := loc.Open(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rc, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		if _, err := rc.Read(make([]byte, 10)); err == nil {
			t.Error("Read after Close succeeded")
		}
	}
	// Close waits for its goroutines, so none may remain working now. One may still be
	// leaving (wg.Done is deferred inside it): give those a moment, never a fetch.
	buf := make([]byte, 1<<20)
	var stacks string
	for range 100 {
		stacks = string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "storage.(*rangeReader)") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("goroutines of a closed stream are still running:\n%s", stacks)
}

func TestS3CancelledContextEndsTheStream(t *testing.T) {
	srv, loc := newBucket(t, "")
	srv.PutObject(t, "backups", "postgres/full/x.dump", randomBytes(1<<20, 12))
	b, err := loc.Stat(context.Background(), "x.dump")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := loc.Open(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	cancel()
	if _, err := io.Copy(io.Discard, rc); !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %v; want context.Canceled", err)
	}
}

// Each fault the operator may meet gets one line that says what is wrong.
func TestS3FaultsAreOneClearLine(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "backups")
	srv.CreateBucket(t, "empty")
	srv.PutObject(t, "backups", "postgres/full/spywatcher_full_20240125_120000.dump.gz", []byte("x"))
	denied := s3test.StartProxy(t, srv.Endpoint)
	denied.Deny(true)

	cases := []struct {
		name string
		do   func() error
		is   error
		says string
	}{
		{"unknown bucket", func() error {
			_, err := openS3(t, "p", srv.Endpoint, "no-such-bucket", "").List(ctx)
			return err
		}, ErrUnreachable, "no such bucket"},
		{"unknown bucket, stat", func() error {
			_, err := openS3(t, "p", srv.Endpoint, "no-such-bucket", "").Stat(ctx, "spywatcher_full_20240125_120000.dump.gz")
			return err
		}, ErrUnreachable, "no such bucket"},
		{"missing key", func() error {
			_, err := openS3(t, "p", srv.Endpoint, "backups", "").Stat(ctx, "spywatcher_full_20990101_000000.dump.gz")
			return err
		}, ErrNotFound, "spywatcher_full_20990101_000000.dump.gz"},
		{"endpoint down", func() error {
			_, err := openS3(t, "p", s3test.ClosedEndpoint(t), "backups", "").List(ctx)
			return err
		}, ErrUnreachable, "cannot reach"},
		{"wrong credentials", func() error {
			_, err := openS3(t, "p", denied.Endpoint, "backups", "").List(ctx)
			return err
		}, ErrUnreachable, "access denied (InvalidAccessKeyId)"},
		{"escaping key", func() error {
			_, err := openS3(t, "p", srv.Endpoint, "backups", "").Stat(ctx, "postgres/full/../../x")
			return err
		}, nil, "escape"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.do()
			if err == nil || (c.is != nil && !errors.Is(err, c.is)) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("got %v; want %v saying %q", err, c.is, c.says)
			}
			if strings.Contains(err.Error(), "\n") || len(err.Error()) > 300 {
				t.Errorf("not one short line: %q", err)
			}
			t.Logf("%v", err)
		})
	}
	t.Run("empty bucket", func(t *testing.T) {
		loc := openS3(t, "p", srv.Endpoint, "empty", "")
		bs, err := loc.List(ctx)
		if err != nil || len(bs) != 0 {
			t.Fatalf("List of an empty bucket = %v, %v", bs, err)
		}
		_, err = Latest(ListAll(ctx, []Location{loc}))
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "p: no full backup") {
			t.Errorf("latest of an empty bucket: %v", err)
		}
	})
}

func TestS3MultipartUploadIsAbortedWhenTheReaderFails(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "backups")
	proxy := s3test.StartProxy(t, srv.Endpoint)
	loc := openS3(t, "primary", proxy.Endpoint, "backups", "", WithTuning(func(o *S3Options) { o.StorageClass = "STANDARD_IA" }))
	broken := errors.New("disk full")
	_, err := loc.Put(context.Background(), "spywatcher_full_20240125_120000.dump.gz",
		&failingReader{r: bytes.NewReader(randomBytes(20<<20, 13)), n: 17 << 20, err: broken})
	if !errors.Is(err, broken) {
		t.Fatalf("Put: %v; want the reader's error", err)
	}
	uploads, err := loc.client.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String("backups")})
	if err != nil {
		t.Fatal(err)
	}
	if len(uploads.Uploads) != 0 {
		t.Errorf("%d unfinished multipart uploads left behind", len(uploads.Uploads))
	}
	if keys := srv.Keys(t, "backups"); len(keys) != 0 {
		t.Errorf("objects left behind: %v", keys)
	}
	sawAbort, sawClass := false, false
	for _, r := range proxy.Requests() {
		sawAbort = sawAbort || r.Method == http.MethodDelete
		sawClass = sawClass || r.StorageClass == "STANDARD_IA"
	}
	if !sawAbort || !sawClass {
		t.Errorf("abort sent: %v; storage class sent: %v", sawAbort, sawClass)
	}
}

// The SDK warns on stderr about responses without checksums unless told otherwise;
// nothing it says may reach the terminal.
func TestS3SDKWritesNothingToStderr(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = w
	var captured bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); io.Copy(&captured, r) }()
	func() {
		defer func() { os.Stderr = saved }()
		srv, loc := newBucket(t, "", WithLog(os.Stderr, false)) // what the CLI passes without --debug
		srv.PutObject(t, "backups", "postgres/full/x.dump", randomBytes(300_000, 14))
		b, err := loc.Stat(context.Background(), "x.dump")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := readAll(t, loc, b); err != nil {
			t.Fatal(err)
		}
		if _, err := loc.Put(context.Background(), "y.dump", bytes.NewReader(randomBytes(6<<20, 15))); err != nil {
			t.Fatal(err)
		}
	}()
	w.Close()
	wg.Wait()
	if captured.Len() > 0 {
		t.Errorf("stderr got %q", captured.String())
	}

	// With a log writer (the journal, or stderr under --debug) the SDK's lines go there.
	var log bytes.Buffer
	srv, loc := newBucket(t, "", WithLog(&log, true))
	srv.PutObject(t, "backups", "postgres/full/x.dump", []byte("x"))
	if _, err := loc.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "ListObjectsV2") && !strings.Contains(log.String(), "GET") {
		t.Errorf("debug log got nothing useful: %q", log.String())
	}
}

// A connection that hangs without closing is given up after IdleTimeout and resumed.
func TestS3StreamResumesAHungConnection(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "backups")
	proxy := s3test.StartProxy(t, srv.Endpoint)
	loc := openS3(t, "primary", proxy.Endpoint, "backups", "", WithTuning(func(o *S3Options) { o.IdleTimeout = 200 * time.Millisecond }))
	data := randomBytes(1<<20, 16)
	srv.PutObject(t, "backups", "postgres/full/x.dump", data)
	b, err := loc.Stat(context.Background(), "x.dump")
	if err != nil {
		t.Fatal(err)
	}
	proxy.StallAfter(20_000, 2, time.Minute)
	start := time.Now()
	got, err := readAll(t, loc, b)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through hung connections: %d bytes, %v", len(got), err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v: the hung connections were not given up", d)
	}
}

// A WAL file goes up in one PUT, with no HEAD before or after it (its name carries its
// content's hash and wal.Pusher has just listed it), and If-None-Match alone still refuses
// a second copy under the name.
func TestS3WALPutIsOneRequestAndNeverOverwrites(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "backups")
	proxy := s3test.StartProxy(t, srv.Endpoint)
	wal := WALOf(openS3(t, "primary", proxy.Endpoint, "backups", "db1"))
	ctx := context.Background()
	name := "000000010000000000000001-" + strings.Repeat("ab", 20) + ".zst.gpg"
	data := randomBytes(3<<20, 5)
	b, err := wal.Put(ctx, name, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if b.Key != "db1/wal/"+name || b.Size != int64(len(data)) {
		t.Errorf("Put said %s, %d bytes; want db1/wal/%s, %d", b.Key, b.Size, name, len(data))
	}
	var methods []string
	for _, r := range proxy.Requests() {
		methods = append(methods, r.Method)
	}
	if !slices.Equal(methods, []string{http.MethodPut}) {
		t.Errorf("requests %v; want one PUT", methods)
	}
	if _, err := wal.Put(ctx, name, bytes.NewReader(randomBytes(1<<10, 6))); !errors.Is(err, ErrExists) {
		t.Errorf("second Put: %v; want ErrExists", err)
	}
	if got := srv.Keys(t, "backups"); len(got) != 1 {
		t.Errorf("objects %v; want one", got)
	}
	rc, err := wal.Open(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read back %d bytes (%v); want the %d stored", len(got), err, len(data))
	}
}
