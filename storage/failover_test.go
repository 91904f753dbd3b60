package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"drconsole/internal/s3test"
)

// threeLocations is the runbook's setup: primary and secondary buckets (here on two
// servers) and the local directory.
func threeLocations(t *testing.T, primaryEndpoint string) (primary, secondary *S3, local *Dir, secondarySrv *s3test.Server) {
	t.Helper()
	secondarySrv = s3test.Start(t)
	secondarySrv.CreateBucket(t, "backups-us-west")
	primary = openS3(t, "primary", primaryEndpoint, "backups", "")
	secondary = openS3(t, "secondary", secondarySrv.Endpoint, "backups-us-west", "")
	local = NewDir("local", t.TempDir())
	return
}

func TestFailoverWhenThePrimaryIsDown(t *testing.T) {
	ctx := context.Background()
	primary, secondary, local, _ := threeLocations(t, s3test.ClosedEndpoint(t))
	name := "spywatcher_full_20240125_120000.dump.gz.gpg"
	data := randomBytes(200_000, 20)
	for _, l := range []Location{secondary, local} {
		if _, err := l.Put(ctx, name, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := local.Put(ctx, "spywatcher_full_20240126_120000.dump.gz", strings.NewReader("local only")); err != nil {
		t.Fatal(err)
	}
	locs := []Location{primary, secondary, local}

	c := ListAll(ctx, locs)
	if c.Locations[0].Reachable || !strings.Contains(c.Locations[0].Err, "cannot reach") {
		t.Errorf("primary status = %+v", c.Locations[0])
	}
	if !c.Locations[1].Reachable || !c.Locations[2].Reachable || c.Locations[1].Backups != 1 || c.Locations[2].Backups != 2 {
		t.Errorf("statuses = %+v", c.Locations)
	}
	if got := strings.Join(c.Where(name), ","); got != "secondary,local" {
		t.Errorf("%s is in %q; want secondary,local", name, got)
	}
	if len(c.Entries) != 2 || !c.Entries[0].Sole() || c.Entries[1].Sole() || len(c.Backups) != 3 {
		t.Errorf("entries = %+v", c.Entries)
	}

	latest, err := Latest(c)
	if err != nil || latest.Name != "spywatcher_full_20240126_120000.dump.gz" || latest.Location != "local" {
		t.Errorf("Latest = %+v, %v", latest, err)
	}

	served, err := OpenWithFailover(ctx, locs, name)
	if err != nil {
		t.Fatal(err)
	}
	defer served.Close()
	if served.Served != "secondary" || len(served.Skipped) != 1 || served.Skipped[0].Location != "primary" ||
		!errors.Is(served.Skipped[0].Err, ErrUnreachable) || !strings.Contains(served.Skipped[0].Reason, "cannot reach") {
		t.Errorf("served by %s, skipped %+v", served.Served, served.Skipped)
	}
	got, err := io.ReadAll(served)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("failover stream: %d bytes, %v", len(got), err)
	}
}

func TestLatestPrefersThePrimaryOnATie(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "backups")
	primary, secondary, local, _ := threeLocations(t, srv.Endpoint)
	name := "spywatcher_full_20240125_120000.dump.gz"
	for _, l := range []Location{local, secondary, primary} { // uploaded last to the primary
		if _, err := l.Put(ctx, name, strings.NewReader("same")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := secondary.Put(ctx, "spywatcher_incremental_20240127_120000.dump.gz", strings.NewReader("newer, not full")); err != nil {
		t.Fatal(err)
	}
	c := ListAll(ctx, []Location{primary, secondary, local})
	b, err := Latest(c)
	if err != nil || b.Name != name || b.Location != "primary" {
		t.Errorf("Latest = %s in %s, %v; want %s in primary", b.Name, b.Location, err, name)
	}
	if got := strings.Join(c.Where(name), ","); got != "primary,secondary,local" {
		t.Errorf("copies in %q", got)
	}
}

func TestFailoverWhenThePrimaryLacksTheBackupOrTheBucket(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "backups")
	primary, secondary, local, _ := threeLocations(t, srv.Endpoint)
	nobucket := openS3(t, "primary", srv.Endpoint, "deleted-bucket", "")
	name := "spywatcher_full_20240125_120000.dump.gz"
	if _, err := secondary.Put(ctx, name, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		primary Location
		reason  string
	}{{primary, "no such backup"}, {nobucket, "no such bucket"}} {
		served, err := OpenWithFailover(ctx, []Location{c.primary, secondary, local}, name)
		if err != nil {
			t.Fatal(err)
		}
		served.Close()
		if served.Served != "secondary" || len(served.Skipped) != 1 || !strings.Contains(served.Skipped[0].Reason, c.reason) {
			t.Errorf("served by %s, skipped %+v; want a reason saying %q", served.Served, served.Skipped, c.reason)
		}
	}
	_, err := OpenWithFailover(ctx, []Location{primary, secondary, local}, "spywatcher_full_20990101_000000.dump.gz")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "primary:") || !strings.Contains(err.Error(), "local:") {
		t.Errorf("a backup nowhere: %v", err)
	}
}

func TestOpenedLocationsFromConfigAndTheEnvironment(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "spywatcher-backups")
	srv.CreateBucket(t, "spywatcher-backups-us-west")
	srv.PutObject(t, "spywatcher-backups", "postgres/full/spywatcher_full_20240125_120000.dump.gz", []byte("p"))
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "spywatcher_full_20240124_120000.dump.gz"), []byte("l"), 0o600)

	// AWS_ENDPOINT_URL_S3 is how users point the SDK at an S3-compatible store.
	t.Setenv("AWS_ENDPOINT_URL_S3", srv.Endpoint)
	t.Setenv("AWS_REGION", "us-east-1")
	env := map[string]string{"S3_BUCKET": "spywatcher-backups", "S3_BUCKET_SECONDARY": "spywatcher-backups-us-west", "BACKUP_DIR": dir}
	locs, err := Locations(ctx, EnvConfig(func(k string) string { return env[k] }), testOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range locs {
		names = append(names, l.Name()+"="+l.String())
	}
	if got := strings.Join(names, " "); got != "primary=s3://spywatcher-backups/ secondary=s3://spywatcher-backups-us-west/ local="+dir {
		t.Errorf("locations = %s", got)
	}
	if !locs[0].(*S3).client.Options().UsePathStyle {
		t.Error("a custom endpoint did not imply path-style addressing")
	}
	c := ListAll(ctx, locs)
	for _, st := range c.Locations {
		if !st.Reachable {
			t.Errorf("%s unreachable: %s", st.Name, st.Err)
		}
	}
	if b, err := Latest(c); err != nil || b.Location != "primary" {
		t.Errorf("Latest = %+v, %v", b, err)
	}

	// s3:// URLs: through the configured location, or an ad-hoc one for another bucket.
	loc, b, err := ResolveS3URL(ctx, "s3://spywatcher-backups/postgres/full/spywatcher_full_20240125_120000.dump.gz", locs, testOpts()...)
	if err != nil || loc.Name() != "primary" || b.Name != "spywatcher_full_20240125_120000.dump.gz" || !b.Recognized() {
		t.Errorf("resolve primary URL: %v %+v %v", loc, b, err)
	}
	srv.CreateBucket(t, "adhoc")
	srv.PutObject(t, "adhoc", "dumps/spywatcher_full_20240125_120000.dump.gz.gpg", []byte("a"))
	loc, b, err = ResolveS3URL(ctx, "s3://adhoc/dumps/spywatcher_full_20240125_120000.dump.gz.gpg", locs, testOpts()...)
	if err != nil || loc.Name() != "s3://adhoc" || b.Name != "spywatcher_full_20240125_120000.dump.gz.gpg" || !b.Encrypted || b.Compression != CompressionGzip {
		t.Fatalf("resolve ad-hoc URL: %v %+v %v", loc, b, err)
	}
	if got, err := readAll(t, loc, b); err != nil || string(got) != "a" {
		t.Errorf("read ad-hoc: %q %v", got, err)
	}
	// A URL names exactly one object: a key at the bucket's root is read from the root
	// even when postgres/full/ holds an object of the same name.
	srv.PutObject(t, "spywatcher-backups", "spywatcher_full_20240125_120000.dump.gz", []byte("root"))
	loc, b, err = ResolveS3URL(ctx, "s3://spywatcher-backups/spywatcher_full_20240125_120000.dump.gz", locs, testOpts()...)
	if err != nil || b.Key != "spywatcher_full_20240125_120000.dump.gz" {
		t.Fatalf("resolve a root key: %+v %v", b, err)
	}
	if got, err := readAll(t, loc, b); err != nil || string(got) != "root" {
		t.Errorf("read root key: %q %v, want the root object", got, err)
	}
	spool, err := SpoolPath("/var/tmp/spool", b)
	if err != nil || spool != "/var/tmp/spool/spywatcher_full_20240125_120000.dump.gz" {
		t.Errorf("SpoolPath = %q, %v", spool, err)
	}
	for _, u := range []string{"s3://adhoc/../x", "s3://adhoc/dumps/..", "s3://adhoc/", "s3:///x", "http://x/y"} {
		if _, _, err := ResolveS3URL(ctx, u, locs, testOpts()...); err == nil {
			t.Errorf("ResolveS3URL(%q) succeeded", u)
		}
	}
}

func TestALocationThatCannotBeSetUpIsReportedNotFatal(t *testing.T) {
	cfg := &Config{Locations: []LocationConfig{
		{Name: "primary", Type: "s3", Bucket: "b", Profile: "no-such-profile"},
		{Name: "local", Type: "dir", Path: t.TempDir()},
	}}
	locs, err := Locations(context.Background(), cfg, testOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	c := ListAll(context.Background(), locs)
	if c.Locations[0].Reachable || !strings.Contains(c.Locations[0].Err, "no-such-profile") || !c.Locations[1].Reachable {
		t.Errorf("statuses = %+v", c.Locations)
	}
}

func TestFailoverPastAHungPrimary(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "backups")
	hung := s3test.StartProxy(t, srv.Endpoint)
	hung.SetLatency(5 * time.Second)
	primary, secondary, local, _ := threeLocations(t, hung.Endpoint)
	name := "spywatcher_full_20240125_120000.dump.gz"
	if _, err := secondary.Put(ctx, name, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	saved := ListTimeout
	ListTimeout = 300 * time.Millisecond
	defer func() { ListTimeout = saved }()
	start := time.Now()
	served, err := OpenWithFailover(ctx, []Location{primary, secondary, local}, name)
	if err != nil {
		t.Fatal(err)
	}
	served.Close()
	if served.Served != "secondary" || !strings.Contains(served.Skipped[0].Reason, "timed out") || time.Since(start) > 3*time.Second {
		t.Errorf("served by %s after %v, skipped %+v", served.Served, time.Since(start), served.Skipped)
	}
	c := ListAll(ctx, []Location{primary, secondary})
	if c.Locations[0].Reachable || !strings.Contains(c.Locations[0].Err, "timed out") {
		t.Errorf("hung primary status = %+v", c.Locations[0])
	}
}

func TestReplicateToPrimaryThenSecondary(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "backups")
	primary, secondary, local, _ := threeLocations(t, srv.Endpoint)
	down := openS3(t, "tertiary", s3test.ClosedEndpoint(t), "backups", "")
	data := randomBytes(6<<20, 30)
	b, err := local.Put(ctx, "spywatcher_full_20240125_120000.dump.gz.gpg", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	got := Replicate(ctx, local, b, []Location{primary, down, secondary})
	if got[0].Err != nil || got[2].Err != nil || got[1].Err == nil || !strings.Contains(got[1].Error, "cannot reach") {
		t.Fatalf("Replicate = %+v", got)
	}
	for _, l := range []Location{primary, secondary} {
		c, err := l.Stat(ctx, b.Name)
		if err != nil || c.Key != "postgres/full/"+b.Name {
			t.Fatalf("%s: %+v %v", l.Name(), c, err)
		}
		if back, err := readAll(t, l, c); err != nil || !bytes.Equal(back, data) {
			t.Errorf("%s holds %d bytes, %v", l.Name(), len(back), err)
		}
	}
}

// A bucket in another region answers 301 to a client of the wrong region; the location
// asks the bucket for its region (on AWS, where none is configured) and uses it.
func TestS3FindsTheBucketsRegion(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "backups-us-west")
	srv.PutObject(t, "backups-us-west", "postgres/full/spywatcher_full_20240125_120000.dump.gz", []byte("west"))
	west := s3test.StartProxy(t, srv.Endpoint)
	west.RequireRegion("us-west-2")

	fixed := openS3(t, "secondary", west.Endpoint, "backups-us-west", "")
	_, err := fixed.List(ctx)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "the bucket is in us-west-2, not us-east-1: set the location's region") {
		t.Errorf("wrong region without detection: %v", err)
	}

	detecting := openS3(t, "secondary", west.Endpoint, "backups-us-west", "", WithTuning(func(o *S3Options) { o.DetectRegion = true }))
	bs, err := detecting.List(ctx)
	if err != nil || len(bs) != 1 || detecting.Region() != "us-west-2" {
		t.Fatalf("with detection: %v, %v, region %s", bs, err, detecting.Region())
	}
	if got, err := readAll(t, detecting, bs[0]); err != nil || string(got) != "west" {
		t.Errorf("read from the other region: %q, %v", got, err)
	}
}
