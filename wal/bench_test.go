package wal

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"drconsole/internal/s3test"
	"drconsole/recovery"
	"drconsole/storage"
)

// BenchmarkPushSegment is one 16 MiB segment compressed, encrypted and stored in the S3
// test server, as wal-push does it (less the process start): the CPU profile behind
// bench/walpush. WALPUSH_SEGMENT=FILE pushes that file (say, real WAL) instead of a made-up one.
func BenchmarkPushSegment(b *testing.B) {
	ent, err := openpgp.NewEntity("Bench", "", "bench@example.com", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		b.Fatal(err)
	}
	src := os.Getenv("WALPUSH_SEGMENT")
	if src == "" {
		src = filepath.Join(b.TempDir(), "000000010000000000000001")
		os.WriteFile(src, fakeSegment(&testing.T{}, filepath.Base(src), 16<<20), 0o600)
	}
	srv := s3test.New()
	defer srv.Close()
	ctx := context.Background()
	creds := storage.WithAWSConfig(config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("bench", "bench", "")))
	b.SetBytes(16 << 20)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		bucket := fmt.Sprintf("bench%d", i)
		if err := srv.Backend.CreateBucket(bucket); err != nil {
			b.Fatal(err)
		}
		loc, err := storage.Open(ctx, storage.LocationConfig{Name: "primary", Type: "s3", Bucket: bucket,
			Endpoint: srv.Endpoint, Region: "us-east-1"}, creds)
		if err != nil {
			b.Fatal(err)
		}
		p := &Pusher{Locations: []storage.Folder{storage.WALOf(loc)}, Recipients: openpgp.EntityList{ent}}
		b.StartTimer()
		if _, err := p.Push(ctx, src); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		srv.Backend.ForceDeleteBucket(bucket)
		b.StartTimer()
	}
}

// BenchmarkFetchSegment is one 16 MiB segment, encrypted and compressed, fetched from a
// directory location: the CPU a fetch costs, without the network. WALPUSH_SEGMENT=FILE
// fetches that file (say, real WAL) instead of a made-up one.
func BenchmarkFetchSegment(b *testing.B) {
	ent, err := openpgp.NewEntity("Bench", "", "bench@example.com", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		b.Fatal(err)
	}
	loc := storage.WALOf(storage.NewDir("local", b.TempDir()))
	src := os.Getenv("WALPUSH_SEGMENT")
	if src == "" {
		src = filepath.Join(b.TempDir(), "000000010000000000000001")
		os.WriteFile(src, fakeSegment(&testing.T{}, filepath.Base(src), 16<<20), 0o600)
	}
	name := filepath.Base(src)
	p := &Pusher{Locations: []storage.Folder{loc}, Recipients: openpgp.EntityList{ent}}
	if _, err := p.Push(context.Background(), src); err != nil {
		b.Fatal(err)
	}
	f := &Fetcher{Locations: []storage.Folder{loc}, Keys: &recovery.Keys{Entities: openpgp.EntityList{ent}}}
	dest := filepath.Join(b.TempDir(), "RECOVERYXLOG")
	b.SetBytes(16 << 20)
	for b.Loop() {
		if _, err := f.Fetch(context.Background(), name, dest); err != nil {
			b.Fatal(err)
		}
	}
}
