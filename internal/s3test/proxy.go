package s3test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Proxy sits between a client and a Server and misbehaves on purpose: it adds latency to
// every request, answers some requests 503 SlowDown or 403 without passing them on, and
// cuts connections in the middle of response bodies. Faults can be changed while requests
// are in flight.
type Proxy struct {
	// Endpoint is where clients connect instead of the server.
	Endpoint string
	srv      *httptest.Server

	mu       sync.Mutex
	latency  time.Duration
	fail503  int           // answer this many more requests 503
	deny     bool          // answer every request 403 InvalidAccessKeyId
	cutAfter int64         // cut responses after this many body bytes ...
	cuts     int           // ... this many more times
	stall    time.Duration // with cuts: go silent this long instead of cutting
	region   string        // the bucket's region: requests signed for another get 301
	log      []Request
	stats    Stats
}

// Request is what the proxy saw of one request.
type Request struct {
	Method  string
	Path    string
	Range   string
	IfMatch string
	// StorageClass is the x-amz-storage-class header (uploads).
	StorageClass string
}

// Stats counts what the proxy did.
type Stats struct {
	Requests  int // requests received
	Answered  int // answered by the proxy itself (503, 403)
	Cut       int // responses cut mid-body
	Forwarded int // passed on to the server
}

// NewProxy starts a proxy to the server at upstream (a base URL); Close stops it.
func NewProxy(upstream string) *Proxy {
	target, err := url.Parse(upstream)
	if err != nil {
		panic(fmt.Sprintf("s3test: proxy upstream %q: %v", upstream, err))
	}
	p := &Proxy{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // the client signed the request for the proxy's host
		},
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		ModifyResponse: p.modifyResponse,
		ErrorLog:       log.New(io.Discard, "", 0),
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.before(w, r) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	p.Endpoint = p.srv.URL
	return p
}

// StartProxy starts a proxy to upstream that is stopped when the test ends.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	p := NewProxy(upstream)
	t.Cleanup(p.Close)
	return p
}

// Close stops the proxy and drops every connection to it.
func (p *Proxy) Close() {
	p.srv.CloseClientConnections()
	p.srv.Close()
}

// SetLatency delays every request by d before it is passed on.
func (p *Proxy) SetLatency(d time.Duration) { p.mu.Lock(); p.latency = d; p.mu.Unlock() }

// Fail503 answers the next n requests with 503 SlowDown.
func (p *Proxy) Fail503(n int) { p.mu.Lock(); p.fail503 = n; p.mu.Unlock() }

// Deny answers every request with 403 InvalidAccessKeyId, as S3 does for wrong credentials.
func (p *Proxy) Deny(on bool) { p.mu.Lock(); p.deny = on; p.mu.Unlock() }

// CutAfter cuts the connection of the next n responses after bytes bytes of their body.
func (p *Proxy) CutAfter(bytes int64, n int) {
	p.mu.Lock()
	p.cutAfter, p.cuts, p.stall = bytes, n, 0
	p.mu.Unlock()
}

// RequireRegion makes the proxy behave like a bucket in region: a request signed for any
// other region is answered 301 PermanentRedirect with the x-amz-bucket-region header,
// as AWS answers a client configured for the wrong region.
func (p *Proxy) RequireRegion(region string) { p.mu.Lock(); p.region = region; p.mu.Unlock() }

// StallAfter makes the next n responses go silent for d after bytes bytes of their body,
// with the connection open, as a link that hangs does.
func (p *Proxy) StallAfter(bytes int64, n int, d time.Duration) {
	p.mu.Lock()
	p.cutAfter, p.cuts, p.stall = bytes, n, d
	p.mu.Unlock()
}

// Stats says what the proxy has done so far.
func (p *Proxy) Stats() Stats { p.mu.Lock(); defer p.mu.Unlock(); return p.stats }

// Requests is every request the proxy received, in order.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.log...)
}

// before applies latency and the faults that answer without the server; it reports
// whether it answered the request itself.
func (p *Proxy) before(w http.ResponseWriter, r *http.Request) bool {
	p.mu.Lock()
	p.stats.Requests++
	p.log = append(p.log, Request{Method: r.Method, Path: r.URL.Path, Range: r.Header.Get("Range"), IfMatch: r.Header.Get("If-Match"),
		StorageClass: r.Header.Get("X-Amz-Storage-Class")})
	latency, deny := p.latency, p.deny
	wrongRegion := p.region != "" && signedRegion(r) != p.region
	fail := p.fail503 > 0 && !wrongRegion
	if fail {
		p.fail503--
	}
	if fail || deny || wrongRegion {
		p.stats.Answered++
	} else {
		p.stats.Forwarded++
	}
	p.mu.Unlock()

	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
			return true
		}
	}
	switch {
	case wrongRegion:
		w.Header().Set("X-Amz-Bucket-Region", p.region)
		writeError(w, http.StatusMovedPermanently, "PermanentRedirect",
			"The bucket you are attempting to access must be addressed using the specified endpoint.")
		return true
	case deny:
		writeError(w, http.StatusForbidden, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
		return true
	case fail:
		writeError(w, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
		return true
	}
	return false
}

// signedRegion is the region in a SigV4 Authorization header's credential scope.
func signedRegion(r *http.Request) string {
	_, scope, ok := strings.Cut(r.Header.Get("Authorization"), "Credential=")
	if !ok {
		return ""
	}
	parts := strings.Split(scope, "/") // AKID/date/region/s3/aws4_request, ...
	if len(parts) < 3 {
		return ""
	}
	return parts[2]
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	if resp.Request.Method != http.MethodGet || resp.StatusCode/100 != 2 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cuts <= 0 {
		return nil
	}
	p.cuts--
	p.stats.Cut++
	resp.Body = &cutBody{ReadCloser: resp.Body, left: p.cutAfter, stall: p.stall, done: resp.Request.Context().Done()}
	return nil
}

// errCut makes the reverse proxy abort the connection, as a dropped link would.
var errCut = errors.New("s3test: connection cut by proxy")

type cutBody struct {
	io.ReadCloser
	left  int64
	stall time.Duration
	done  <-chan struct{} // the client went away
}

func (c *cutBody) Read(b []byte) (int, error) {
	if c.left <= 0 && c.stall > 0 {
		select {
		case <-time.After(c.stall):
		case <-c.done:
			return 0, errCut
		}
		c.stall, c.left = 0, 1<<62
	}
	if c.left <= 0 {
		return 0, errCut
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.ReadCloser.Read(b)
	c.left -= int64(n)
	return n, err
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Connection", "close")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>%s</Code><Message>%s</Message><RequestId>s3test</RequestId></Error>`, code, msg)
}

// ClosedEndpoint is the URL of a loopback port nothing listens on: an endpoint that is down.
func ClosedEndpoint(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}
