package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"drconsole/internal/gpgtest"
	"drconsole/internal/pgtest"
	"drconsole/internal/s3test"
)

// The CLI against S3: a real S3-protocol server (gofakes3) on 127.0.0.1, the real AWS SDK
// client, the real PostgreSQL cluster and real gpg keys. The locations come from a
// configuration file passed with --config, as an operator's would.

const (
	primaryBucket   = "spywatcher-backups"
	secondaryBucket = "spywatcher-backups-us-west"
	partSize        = 64 << 10 // the smallest part_size a configuration may set
)

// isolateAWS keeps the machine's AWS setup (profiles, endpoints, instance metadata) out of
// the test and gives the SDK credentials the test server accepts. The SDK reads the process
// environment, not runCLI's map, so they go there.
func isolateAWS(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "") // restored when the test ends
			os.Unsetenv(k)
		}
	}
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "test",
		"AWS_SECRET_ACCESS_KEY":       "test",
		"AWS_REGION":                  "us-east-1",
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
	} {
		t.Setenv(k, v)
	}
}

// s3Location is one S3 location of a configuration file; extra lines (e.g. "part_size:
// 64KiB") are added as they are.
func s3Location(name, bucket, endpoint string, extra ...string) string {
	s := fmt.Sprintf("  - name: %s\n    bucket: %s\n    endpoint: %s\n    region: us-east-1\n    path_style: true\n", name, bucket, endpoint)
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s
}

func dirLocation(name, path string) string {
	return fmt.Sprintf("  - name: %s\n    path: %s\n", name, path)
}

// writeConfig writes a configuration file naming locs, in order, and returns its path.
func writeConfig(t *testing.T, locs ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "drconsole.yaml")
	if err := os.WriteFile(p, []byte("locations:\n"+strings.Join(locs, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// s3Restore is a live database with a backup of it that `drconsole backup` stored in the
// primary and the secondary bucket of a fresh S3 server.
type s3Restore struct {
	c      *pgtest.Cluster
	db     string
	padded bool
	want   string // fingerprint of the live data at backup time
	key    *gpgtest.Key
	srv    *s3test.Server
	env    map[string]string
	name   string // the backup's name
	objKey string // its key in both buckets
	data   []byte // its bytes
	stored string // backup --json output
}

// newS3Restore sets one up. With padded, the database also holds ~600 KiB of random
// bytes, so the backup spans about ten 64 KiB parts of a ranged download.
func newS3Restore(t *testing.T, padded bool) *s3Restore {
	t.Helper()
	isolateAWS(t)
	f := &s3Restore{c: pgtest.Shared(t), padded: padded, srv: s3test.Start(t), key: gpgtest.NewKey(t, "Ops", "")}
	f.db = f.c.NewDB(t)
	f.c.Exec(t, f.db, cliSchema)
	if padded {
		f.c.Exec(t, f.db, `CREATE TABLE "Attachment" (id int PRIMARY KEY, blob bytea);
INSERT INTO "Attachment" SELECT g, decode(string_agg(md5(g::text || ':' || r::text || random()::text), ''), 'hex')
  FROM generate_series(1, 600) g, generate_series(1, 64) r GROUP BY g`)
	}
	f.want = f.fingerprint(t)
	f.srv.CreateBucket(t, primaryBucket)
	f.srv.CreateBucket(t, secondaryBucket)
	f.env = map[string]string{"XDG_STATE_HOME": t.TempDir(), "HOME": t.TempDir()}
	cfg := writeConfig(t, s3Location("primary", primaryBucket, f.srv.Endpoint), s3Location("secondary", secondaryBucket, f.srv.Endpoint))
	out, errb, code := runCLI(t, f.env, "backup", "--config", cfg, "--db-url", f.c.URL(f.db), "--gpg-recipient", f.key.PublicFile, "--json")
	if code != 0 {
		t.Fatalf("backup to S3: exit %d: %s", code, errb)
	}
	var stored struct {
		Stored []struct{ Name, Key, Location string }
	}
	if err := json.Unmarshal([]byte(out), &stored); err != nil || len(stored.Stored) == 0 {
		t.Fatalf("backup --json: %v %s", err, out)
	}
	f.name, f.stored = stored.Stored[0].Name, out
	f.objKey = "postgres/full/" + f.name
	f.data = f.object(t, primaryBucket, f.objKey)
	return f
}

// fingerprint covers cliSchema's tables and, when padded, the random bytes.
func (f *s3Restore) fingerprint(t *testing.T) string {
	t.Helper()
	fp := cliFingerprint(t, f.c, f.db)
	if f.padded {
		fp += " " + f.c.Query(t, f.db, `SELECT count(*) || ':' || md5(string_agg(md5(blob), '' ORDER BY id)) FROM "Attachment"`)[0][0]
	}
	return fp
}

// object reads an object straight from the server's store.
func (f *s3Restore) object(t *testing.T, bucket, key string) []byte {
	t.Helper()
	obj, err := f.srv.Backend.GetObject(bucket, key, nil)
	if err != nil {
		t.Fatalf("get s3://%s/%s: %v", bucket, key, err)
	}
	defer obj.Contents.Close()
	data, err := io.ReadAll(obj.Contents)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// restore damages the live data and runs restore --yes of backup with the configuration
// cfg and any extra flags.
func (f *s3Restore) restore(t *testing.T, cfg, backup string, extra ...string) (stdout, stderr string, code int) {
	t.Helper()
	f.c.Exec(t, f.db, `DELETE FROM "ApiKey"; UPDATE "User" SET bio = 'lost'`)
	args := append([]string{"restore", "--yes", "--config", cfg, "--gpg-key", f.key.SecretFile, "--db-url", f.c.URL(f.db)}, extra...)
	return runCLI(t, f.env, append(args, backup)...)
}

// restored checks a restore succeeded and brought every row back.
func (f *s3Restore) restored(t *testing.T, what string, stderr string, code int) {
	t.Helper()
	if code != 0 {
		t.Fatalf("%s: exit %d:\n%s", what, code, stderr)
	}
	if got := f.fingerprint(t); got != f.want {
		t.Fatalf("%s: restored database differs:\n got %s\nwant %s", what, got, f.want)
	}
}

// restoreJSON is what these tests read of restore --json.
type restoreJSON struct {
	Location string
	Skipped  []struct{ Location, Reason string } `json:"skipped_locations"`
	Swapped  bool
	Read     int64 `json:"bytes_read"`
	Backup   struct{ Name, Key string }
}

func decodeRestore(t *testing.T, out string) restoreJSON {
	t.Helper()
	var r restoreJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("restore --json: %v\n%s", err, out)
	}
	return r
}

// refused checks a restore failed with exit code want and drconsole's one-line error
// containing each of mention, leaving the live database as it was (live() still says
// before) and no scratch database behind.
func refused(t *testing.T, c *pgtest.Cluster, db string, live func() string, before, stderr string, code, want int, mention ...string) {
	t.Helper()
	if code != want {
		t.Errorf("exit %d, want %d; stderr:\n%s", code, want, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "drconsole restore: ") {
		t.Errorf("last stderr line is not drconsole's one-line error: %q", last)
	}
	for _, m := range mention {
		if !strings.Contains(last, m) {
			t.Errorf("error does not say %q: %s", m, last)
		}
	}
	if got := live(); got != before {
		t.Errorf("live database changed:\n got %s\nwant %s", got, before)
	}
	for _, d := range c.Databases(t) {
		if strings.HasPrefix(d, db+"_restore_") {
			t.Errorf("scratch database left: %s", d)
		}
	}
}

// sdkNoise finds lines the AWS SDK's logger writes ("SDK 2024/01/25 12:00:00 WARN …"),
// or its checksum warning, in a command's stderr.
func sdkNoise(stderr string) []string {
	var noise []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "SDK ") || strings.Contains(strings.ToLower(l), "checksum") {
			noise = append(noise, l)
		}
	}
	return noise
}

// when runs do once the proxy has received requests that match says are enough, while a
// command runs. The returned func stops watching and reports whether do ran.
func when(p *s3test.Proxy, match func([]s3test.Request) bool, do func()) (stop func() bool) {
	done, ran := make(chan struct{}), make(chan bool, 1)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				ran <- false
				return
			case <-tick.C:
			}
			if match(p.Requests()) {
				do()
				ran <- true
				return
			}
		}
	}()
	return func() bool { close(done); return <-ran }
}

// ranged are the ranged GETs of an object, in order, as their start offsets.
func ranged(reqs []s3test.Request, key string) []int64 {
	var starts []int64
	for _, r := range reqs {
		from, ok := strings.CutPrefix(r.Range, "bytes=")
		if r.Method != "GET" || !ok || !strings.HasSuffix(r.Path, "/"+key) {
			continue
		}
		from, _, _ = strings.Cut(from, "-")
		n, _ := strconv.ParseInt(from, 10, 64)
		starts = append(starts, n)
	}
	return starts
}

// restoreStream is the part of a list of ranged GETs (see ranged) that the restore's own
// stream made: from the second read from byte 0 on, the first being the pre-flight look at
// the archive's table of contents.
func restoreStream(starts []int64) []int64 {
	fromZero := 0
	for i, from := range starts {
		if from == 0 {
			if fromZero++; fromZero == 2 {
				return starts[i:]
			}
		}
	}
	return nil
}

// restoreStreamAt reports whether the restore's stream has asked for bytes at or past
// offset.
func restoreStreamAt(key string, offset int64) func([]s3test.Request) bool {
	return func(reqs []s3test.Request) bool {
		for _, from := range restoreStream(ranged(reqs, key)) {
			if from >= offset {
				return true
			}
		}
		return false
	}
}

func TestS3BackupStoresTheSameBytesInBothBuckets(t *testing.T) {
	f := newS3Restore(t, false)
	var stored struct {
		Stored []struct {
			Name, Key, Location string
			Size                int64
		}
	}
	if err := json.Unmarshal([]byte(f.stored), &stored); err != nil {
		t.Fatal(err)
	}
	if len(stored.Stored) != 2 || stored.Stored[0].Location != "primary" || stored.Stored[1].Location != "secondary" ||
		stored.Stored[0].Key != f.objKey || stored.Stored[1].Key != f.objKey || !strings.HasSuffix(f.name, ".dump.gz.gpg") {
		t.Fatalf("backup --json:\n%s", f.stored)
	}
	for _, bucket := range []string{primaryBucket, secondaryBucket} {
		if keys := f.srv.Keys(t, bucket); len(keys) != 1 || keys[0] != f.objKey {
			t.Errorf("s3://%s holds %v; want only %s", bucket, keys, f.objKey)
		}
	}
	if second := f.object(t, secondaryBucket, f.objKey); !bytes.Equal(second, f.data) || int64(len(f.data)) != stored.Stored[0].Size {
		t.Errorf("the buckets hold different bytes: primary %d, secondary %d, reported %d", len(f.data), len(second), stored.Stored[0].Size)
	}

	// What was uploaded is the backup job's format: the real gpg decrypts it.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, f.name), f.data, 0o600)
	f.key.Decrypt(t, filepath.Join(dir, f.name), filepath.Join(dir, "plain.dump.gz"))
	if gz, _ := os.ReadFile(filepath.Join(dir, "plain.dump.gz")); len(gz) < 2 || gz[0] != 0x1f || gz[1] != 0x8b {
		t.Errorf("decrypted backup is not gzip")
	}
}

func TestS3BackupsListsEveryLocation(t *testing.T) {
	f := newS3Restore(t, false)
	const older = "spywatcher_full_20240101_030000.dump.gz.gpg"
	f.srv.PutObject(t, secondaryBucket, "postgres/full/"+older, f.data)
	f.srv.PutObject(t, primaryBucket, "wal/000000010000000000000007", []byte("wal"))
	local := t.TempDir()
	cfg := writeConfig(t, s3Location("primary", primaryBucket, f.srv.Endpoint), s3Location("secondary", secondaryBucket, f.srv.Endpoint), dirLocation("local", local))

	out, errb, code := runCLI(t, f.env, "backups", "--json", "--config", cfg)
	if code != 0 {
		t.Fatalf("backups: exit %d: %s", code, errb)
	}
	var list struct {
		Backups []struct {
			Name, Location, Key string
			Locations           []string
			Size                int64
		}
		Locations []struct {
			Name, Where, Error string
			Reachable          bool
			Backups            int
			LatestWAL          string `json:"latest_wal"`
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	wantLocs := []struct {
		name, where string
		backups     int
	}{{"primary", "s3://" + primaryBucket + "/", 1}, {"secondary", "s3://" + secondaryBucket + "/", 2}, {"local", local, 0}}
	if len(list.Locations) != len(wantLocs) {
		t.Fatalf("locations: %s", out)
	}
	for i, w := range wantLocs {
		l := list.Locations[i]
		if l.Name != w.name || l.Where != w.where || !l.Reachable || l.Error != "" || l.Backups != w.backups {
			t.Errorf("location %d = %+v; want %s at %s, reachable, with %d backups", i, l, w.name, w.where, w.backups)
		}
	}
	if list.Locations[0].LatestWAL != "000000010000000000000007" {
		t.Errorf("primary's newest WAL segment = %q", list.Locations[0].LatestWAL)
	}
	// Newest first; the copy in the primary before the one in the secondary.
	if len(list.Backups) != 3 {
		t.Fatalf("backups: %s", out)
	}
	for i, w := range []struct {
		name, location string
		locations      []string
	}{{f.name, "primary", []string{"primary", "secondary"}}, {f.name, "secondary", []string{"primary", "secondary"}}, {older, "secondary", []string{"secondary"}}} {
		b := list.Backups[i]
		if b.Name != w.name || b.Location != w.location || strings.Join(b.Locations, ",") != strings.Join(w.locations, ",") || b.Size != int64(len(f.data)) {
			t.Errorf("backup %d = %+v; want %s in %s, held by %v", i, b, w.name, w.location, w.locations)
		}
	}

	// The table says the same to the operator.
	out, errb, code = runCLI(t, f.env, "backups", "--config", cfg)
	if code != 0 {
		t.Fatalf("backups: exit %d: %s", code, errb)
	}
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasSuffix(line, older) && !strings.Contains(line, "secondary only"):
			t.Errorf("the secondary-only backup is not marked so: %q", line)
		case strings.HasSuffix(line, f.name) && !strings.Contains(line, "primary+secondary"):
			t.Errorf("the backup in both buckets is not marked so: %q", line)
		}
	}
	if len(sdkNoise(errb)) > 0 {
		t.Errorf("SDK log lines on stderr:\n%s", errb)
	}
}

// TestS3RestoreRoundTrip restores from S3 by name, by s3:// URL (from the secondary bucket)
// and as latest; every row comes back, and nothing the SDK says reaches the terminal.
func TestS3RestoreRoundTrip(t *testing.T) {
	f := newS3Restore(t, false)
	cfg := writeConfig(t, s3Location("primary", primaryBucket, f.srv.Endpoint), s3Location("secondary", secondaryBucket, f.srv.Endpoint))

	_, errb, code := f.restore(t, cfg, f.name)
	f.restored(t, "restore by name", errb, code)
	if !strings.Contains(errb, "done: "+f.db+" is the restored database") {
		t.Errorf("restore output:\n%s", errb)
	}
	// The SDK warns "Response has no supported checksum" on GETs from most S3-compatible
	// stores unless told not to; neither that nor any other SDK log line may show.
	if noise := sdkNoise(errb); len(noise) > 0 {
		t.Errorf("SDK log lines on stderr of a restore:\n%s", strings.Join(noise, "\n"))
	}

	for _, tc := range []struct{ arg, location string }{
		{"s3://" + secondaryBucket + "/" + f.objKey, "secondary"},
		{"latest", "primary"}, // on a tie the primary serves
	} {
		out, errb, code := f.restore(t, cfg, tc.arg, "--json")
		f.restored(t, "restore "+tc.arg, errb, code)
		r := decodeRestore(t, out)
		if r.Location != tc.location || len(r.Skipped) != 0 || !r.Swapped || r.Backup.Name != f.name || r.Backup.Key != f.objKey || r.Read != int64(len(f.data)) {
			t.Errorf("restore %s --json: %+v; want served by %s with nothing skipped, %d bytes read", tc.arg, r, tc.location, len(f.data))
		}
		if noise := sdkNoise(errb); len(noise) > 0 {
			t.Errorf("SDK log lines on stderr of restore %s:\n%s", tc.arg, strings.Join(noise, "\n"))
		}
	}

	// verify reads the whole object from S3 too, by name and by URL.
	for _, arg := range []string{f.name, "s3://" + primaryBucket + "/" + f.objKey} {
		out, errb, code := runCLI(t, f.env, "verify", "--json", "--config", cfg, "--gpg-key", f.key.SecretFile, arg)
		if code != 0 || !strings.Contains(out, `"complete": true`) || !strings.Contains(out, fmt.Sprintf(`"bytes_read": %d`, len(f.data))) {
			t.Errorf("verify %s: exit %d\n%s\n%s", arg, code, out, errb)
		}
	}

	// The check above would see SDK lines if they were let through: --debug lets them.
	_, errb, _ = runCLI(t, f.env, "backups", "--debug", "--config", cfg)
	if len(sdkNoise(errb)) == 0 {
		t.Errorf("backups --debug shows no SDK log lines, so the absence of them proves nothing:\n%s", errb)
	}
}

// TestS3RestoreFailsOverToTheSecondary makes the primary unreachable (its endpoint down,
// or refusing the credentials): restores by name and latest come from the secondary, and
// stderr and backups --json say the primary was skipped and why.
func TestS3RestoreFailsOverToTheSecondary(t *testing.T) {
	f := newS3Restore(t, false)
	denied := s3test.StartProxy(t, f.srv.Endpoint)
	denied.Deny(true)
	for _, tc := range []struct {
		name, endpoint, reason string
		restores               []string
	}{
		// by name the primary is skipped when its HEAD fails, for latest when its listing does
		{"endpoint down", s3test.ClosedEndpoint(t), "cannot reach", []string{f.name, "latest"}},
		{"access denied", denied.Endpoint, "access denied", []string{"latest"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeConfig(t, s3Location("primary", primaryBucket, tc.endpoint), s3Location("secondary", secondaryBucket, f.srv.Endpoint))
			for _, arg := range tc.restores {
				out, errb, code := f.restore(t, cfg, arg, "--json")
				f.restored(t, "restore "+arg, errb, code)
				r := decodeRestore(t, out)
				if r.Location != "secondary" || len(r.Skipped) != 1 || r.Skipped[0].Location != "primary" || !strings.Contains(r.Skipped[0].Reason, tc.reason) {
					t.Errorf("restore %s --json: %+v; want served by secondary, primary skipped: %s", arg, r, tc.reason)
				}
				var skipLines []string
				for _, l := range strings.Split(errb, "\n") {
					if strings.Contains(l, "skipped") {
						skipLines = append(skipLines, l)
					}
				}
				if len(skipLines) != 1 || !strings.HasPrefix(skipLines[0], "drconsole: location primary skipped: ") ||
					!strings.Contains(skipLines[0], tc.reason) || !strings.HasSuffix(skipLines[0], "; using secondary") {
					t.Errorf("restore %s: stderr does not say once why the primary was skipped:\n%s", arg, errb)
				}
			}

			out, errb, code := runCLI(t, f.env, "backups", "--json", "--config", cfg)
			if code != 0 {
				t.Fatalf("backups: exit %d: %s", code, errb)
			}
			var list struct {
				Backups   []struct{ Name, Location string }
				Locations []struct {
					Name, Error string
					Reachable   bool
				}
			}
			if err := json.Unmarshal([]byte(out), &list); err != nil {
				t.Fatal(err)
			}
			if len(list.Locations) != 2 || list.Locations[0].Reachable || !strings.Contains(list.Locations[0].Error, tc.reason) || !list.Locations[1].Reachable {
				t.Errorf("backups --json locations: %+v; want primary unreachable (%s), secondary reachable", list.Locations, tc.reason)
			}
			if len(list.Backups) != 1 || list.Backups[0].Location != "secondary" {
				t.Errorf("backups --json backups: %+v", list.Backups)
			}
		})
	}
}

// TestS3RestoreRefusesAnObjectOverwrittenMidDownload replaces the backup in the bucket
// with other bytes of the same size while the restore streams it: the restore must stop
// (not splice the two versions), with the live database untouched and no scratch left.
func TestS3RestoreRefusesAnObjectOverwrittenMidDownload(t *testing.T) {
	f := newS3Restore(t, true)
	if len(f.data) < 6*partSize {
		t.Fatalf("backup is %d bytes; the test needs one of several parts", len(f.data))
	}
	proxy := s3test.StartProxy(t, f.srv.Endpoint)
	proxy.SetLatency(50 * time.Millisecond) // about half a second per pass over the object
	cfg := writeConfig(t, s3Location("primary", primaryBucket, proxy.Endpoint, "part_size: 64KiB", "concurrency: 1"))

	other := bytes.Clone(f.data)
	other[len(other)-100] ^= 0xff
	var putErr error
	stop := when(proxy, restoreStreamAt(f.objKey, 2*partSize), func() {
		putErr = f.srv.Put(primaryBucket, f.objKey, bytes.NewReader(other), int64(len(other)))
	})
	before := f.fingerprint(t)
	_, errb, code := runCLI(t, f.env, "restore", "--yes", "--config", cfg, "--gpg-key", f.key.SecretFile, "--db-url", f.c.URL(f.db), f.name)
	if !stop() {
		t.Fatalf("the restore ended before the overwrite (exit %d):\n%s", code, errb)
	}
	if putErr != nil {
		t.Fatal(putErr)
	}
	refused(t, f.c, f.db, func() string { return f.fingerprint(t) }, before, errb, code, exitCorrupt, f.name, "backup changed while it was being read")
	// It stopped at the first part fetched after the overwrite, not at the end. (A splice
	// would fail too, at the end, on the OpenPGP integrity check; and the OpenPGP layer
	// does not say why its input failed, so this is what tells the two apart.)
	starts := ranged(proxy.Requests(), f.objKey)
	if last := starts[len(starts)-1]; last >= int64(len(f.data))-partSize {
		t.Errorf("the restore read on to the last part (GETs from %v)", starts)
	}
}

// TestS3RestoreResumesThroughCutsAnd503s cuts connections in the middle of parts and
// answers 503 SlowDown while the restore streams the backup: the restore resumes each part
// from the byte it reached and every row comes back.
func TestS3RestoreResumesThroughCutsAnd503s(t *testing.T) {
	f := newS3Restore(t, true)
	proxy := s3test.StartProxy(t, f.srv.Endpoint)
	// Each request waits 50ms before it is passed on, so the faults armed when the
	// restore's first GET arrives are in place before that GET is answered.
	proxy.SetLatency(50 * time.Millisecond)
	cfg := writeConfig(t, s3Location("primary", primaryBucket, proxy.Endpoint, "part_size: 64KiB"), s3Location("secondary", secondaryBucket, f.srv.Endpoint))

	// Armed when the restore's own stream starts, not during the pre-flight look.
	stop := when(proxy, restoreStreamAt(f.objKey, 0), func() {
		proxy.CutAfter(20_000, 6)
		proxy.Fail503(3)
	})
	out, errb, code := f.restore(t, cfg, f.name, "--json")
	if !stop() {
		t.Fatalf("the faults were never armed (exit %d):\n%s", code, errb)
	}
	f.restored(t, "restore through faults", errb, code)
	if r := decodeRestore(t, out); r.Location != "primary" || len(r.Skipped) != 0 || r.Read != int64(len(f.data)) {
		t.Errorf("restore --json: %+v; want %d bytes served by the primary", r, len(f.data))
	}
	st := proxy.Stats()
	if st.Cut < 1 || st.Answered < 3 {
		t.Errorf("proxy stats %+v: the faults did not happen", st)
	}
	// A resumed GET starts where the cut one stopped: inside a part, not at its start.
	// With every row back and exactly the object's size read, no byte came twice.
	resumed := 0
	for _, from := range restoreStream(ranged(proxy.Requests(), f.objKey)) {
		if from%partSize != 0 {
			resumed++
		}
	}
	if resumed == 0 {
		t.Errorf("the restore's stream resumed no GET inside a part; cut %d responses", st.Cut)
	}
	t.Logf("proxy: %+v, %d GETs resumed mid-part", st, resumed)
}

// TestS3RestoreRefusesWhatIsNotThere: an unknown bucket, a missing key and empty buckets
// each end in one line and exit code 8, with the live database untouched.
func TestS3RestoreRefusesWhatIsNotThere(t *testing.T) {
	isolateAWS(t)
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	c.Exec(t, db, cliSchema)
	before := cliFingerprint(t, c, db)
	srv := s3test.Start(t)
	srv.CreateBucket(t, primaryBucket)
	srv.CreateBucket(t, secondaryBucket)
	env := map[string]string{"XDG_STATE_HOME": t.TempDir(), "HOME": t.TempDir()}
	both := writeConfig(t, s3Location("primary", primaryBucket, srv.Endpoint), s3Location("secondary", secondaryBucket, srv.Endpoint))
	unknown := writeConfig(t, s3Location("primary", "no-such-bucket", srv.Endpoint))
	const missing = "spywatcher_full_19990101_000000.dump.gz.gpg"

	for _, tc := range []struct {
		name, cfg, arg string
		mention        []string
	}{
		{"unknown bucket by URL", both, "s3://no-such-bucket/postgres/full/" + missing, []string{"s3://no-such-bucket", "no such bucket"}},
		{"unknown bucket configured", unknown, "latest", []string{"primary", "no such bucket"}},
		{"unknown bucket by name", unknown, missing, []string{"primary", "no such bucket"}},
		{"missing key by name", both, missing, []string{missing, "primary", "secondary"}},
		{"missing key by URL", both, "s3://" + primaryBucket + "/postgres/full/" + missing, []string{"no such backup", "postgres/full/" + missing, "s3://" + primaryBucket}},
		{"empty buckets", both, "latest", []string{"no full backup", "primary", "secondary"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errb, code := runCLI(t, env, "restore", "--yes", "--config", tc.cfg, "--db-url", c.URL(db), tc.arg)
			refused(t, c, db, func() string { return cliFingerprint(t, c, db) }, before, errb, code, exitUnreachable, tc.mention...)
			if noise := sdkNoise(errb); len(noise) > 0 {
				t.Errorf("SDK log lines on stderr:\n%s", strings.Join(noise, "\n"))
			}
		})
	}
	for _, b := range []string{primaryBucket, secondaryBucket} {
		if keys := srv.Keys(t, b); len(keys) != 0 {
			t.Errorf("s3://%s gained %v", b, keys)
		}
	}
}
