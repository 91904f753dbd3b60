package storage

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"drconsole/internal/s3test"
)

func TestMain(m *testing.M) {
	// The tests talk only to servers they start: keep the machine's AWS setup (and the
	// instance metadata service) out of them.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") || k == "S3_BUCKET" || k == "S3_BUCKET_SECONDARY" || k == "DRCONSOLE_CONFIG" {
			os.Unsetenv(k)
		}
	}
	os.Setenv("AWS_CONFIG_FILE", os.DevNull)
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	os.Exit(m.Run())
}

// testCreds are what every test client signs with; gofakes3 accepts any.
func testOpts(extra ...Option) []Option {
	return append([]Option{
		WithAWSConfig(config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""))),
		// Test endpoints fail fast; the failover tests would otherwise wait out the
		// SDK's backoff against a closed port.
		WithS3Options(func(o *s3.Options) { o.RetryMaxAttempts = 2 }),
		WithTuning(func(o *S3Options) {
			if o.PartSize == 0 {
				o.PartSize = 64 << 10
			}
			o.Backoff = 10 * time.Millisecond
			o.Retries = 8
		}),
	}, extra...)
}

// openS3 opens an S3 location over bucket/prefix at endpoint, the way the CLI would.
func openS3(t testing.TB, name, endpoint, bucket, prefix string, extra ...Option) *S3 {
	t.Helper()
	loc, err := Open(context.Background(), LocationConfig{Name: name, Type: "s3", Bucket: bucket, Prefix: prefix, Endpoint: endpoint, Region: "us-east-1"}, testOpts(extra...)...)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	return loc.(*S3)
}

// newBucket starts a server with an empty bucket and opens a location over it.
func newBucket(t testing.TB, prefix string, extra ...Option) (*s3test.Server, *S3) {
	t.Helper()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "backups")
	return srv, openS3(t, "primary", srv.Endpoint, "backups", prefix, extra...)
}
