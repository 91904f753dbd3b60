// Package s3test starts a real S3-protocol server (gofakes3, in memory) on 127.0.0.1 for
// tests and benchmarks, and a fault-injecting proxy to put between it and a client.
package s3test

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Server is an in-memory S3 server listening on the loopback interface.
type Server struct {
	// Endpoint is the server's base URL, e.g. http://127.0.0.1:41234; clients must use
	// path-style addressing.
	Endpoint string
	Backend  *s3mem.Backend
	srv      *httptest.Server
}

// New starts a server; Close stops it. Tests use Start, which closes it for them.
func New() *Server {
	backend := s3mem.New()
	faker := gofakes3.New(backend,
		gofakes3.WithTimeSkewLimit(0),
		gofakes3.WithIntegrityCheck(true),
	)
	srv := httptest.NewUnstartedServer(faker.Server())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // gofakes3 trips net/http's warnings
	srv.Start()
	return &Server{Endpoint: srv.URL, Backend: backend, srv: srv}
}

// Start starts a server that is stopped when the test ends, however it ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := New()
	t.Cleanup(s.Close)
	return s
}

// Close stops the server and drops every connection to it.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// CreateBucket makes an empty bucket.
func (s *Server) CreateBucket(t testing.TB, bucket string) {
	t.Helper()
	if err := s.Backend.CreateBucket(bucket); err != nil {
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
}

// PutObject stores data under key, replacing what was there, straight into the backend
// (no HTTP), so tests can seed or overwrite objects while a client is reading.
func (s *Server) PutObject(t testing.TB, bucket, key string, data []byte) {
	t.Helper()
	if err := s.Put(bucket, key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("put s3://%s/%s: %v", bucket, key, err)
	}
}

// Put stores size bytes from r under key, replacing what was there.
func (s *Server) Put(bucket, key string, r io.Reader, size int64) error {
	meta := map[string]string{"Last-Modified": time.Now().UTC().Format(http.TimeFormat)}
	if _, err := s.Backend.PutObject(bucket, key, meta, r, size, nil); err != nil {
		return fmt.Errorf("put s3://%s/%s: %w", bucket, key, err)
	}
	return nil
}

// Keys lists every key in the bucket, so tests can assert what was (not) left behind.
func (s *Server) Keys(t testing.TB, bucket string) []string {
	t.Helper()
	list, err := s.Backend.ListBucket(bucket, nil, gofakes3.ListBucketPage{})
	if err != nil {
		t.Fatalf("list s3://%s: %v", bucket, err)
	}
	var keys []string
	for _, o := range list.Contents {
		keys = append(keys, o.Key)
	}
	return keys
}
