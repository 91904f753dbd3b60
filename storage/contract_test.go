package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// subject is one location under the contract, with a way to change a stored backup
// behind the location's back.
type subject struct {
	loc       Location
	overwrite func(t *testing.T, b Backup, data []byte)
}

// The contract every Location keeps; Dir and S3 both run it.
func TestContractDir(t *testing.T) {
	runContract(t, func(t *testing.T) subject {
		root := t.TempDir()
		return subject{
			loc: NewDir("local", root),
			overwrite: func(t *testing.T, b Backup, data []byte) {
				p := filepath.Join(root, filepath.FromSlash(b.Key))
				if err := os.WriteFile(p, data, 0o600); err != nil {
					t.Fatal(err)
				}
				// make sure the modification time moves even on coarse clocks
				later := b.Modified.Add(2 * time.Second)
				os.Chtimes(p, later, later)
			},
		}
	})
}

func TestContractS3(t *testing.T) {
	for _, prefix := range []string{"", "team/prod"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			runContract(t, func(t *testing.T) subject {
				srv, loc := newBucket(t, prefix)
				return subject{
					loc: loc,
					overwrite: func(t *testing.T, b Backup, data []byte) {
						srv.PutObject(t, "backups", b.Key, data)
					},
				}
			})
		})
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// failingReader gives n bytes, then fails.
type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

func readAll(t *testing.T, loc Location, b Backup) ([]byte, error) {
	t.Helper()
	rc, err := loc.Open(context.Background(), b)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func runContract(t *testing.T, newSubject func(t *testing.T) subject) {
	ctx := context.Background()

	t.Run("empty location lists nothing", func(t *testing.T) {
		s := newSubject(t)
		bs, err := s.loc.List(ctx)
		if err != nil || len(bs) != 0 {
			t.Fatalf("List of an empty location = %v, %v; want nothing, no error", bs, err)
		}
	})

	t.Run("put, list, stat, open", func(t *testing.T) {
		s := newSubject(t)
		contents := map[string][]byte{
			"spywatcher_full_20240124_120000.dump.gz":        randomBytes(1000, 1),
			"spywatcher_full_20240125_120000.dump.gz.gpg":    randomBytes(300_000, 2),    // several download parts
			"spywatcher_incremental_20240125_180000.dump.gz": randomBytes(11<<20+123, 3), // multipart upload
			"spywatcher_full_20240123_020000.sql.gz":         []byte("not really gzip"),
			"notes.txt":                                      []byte("unknown names are listed, not dropped"),
			"spywatcher_full_20240122_020000.dump":           {},
		}
		for name, data := range contents {
			b, err := s.loc.Put(ctx, name, bytes.NewReader(data))
			if err != nil {
				t.Fatalf("Put %s: %v", name, err)
			}
			if b.Name != name || b.Size != int64(len(data)) || b.Location != s.loc.Name() {
				t.Errorf("Put %s returned %+v", name, b)
			}
		}
		bs, err := s.loc.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != len(contents) {
			t.Fatalf("List gave %d backups, want %d: %+v", len(bs), len(contents), bs)
		}
		for i := 1; i < len(bs); i++ {
			if bs[i].SortTime().After(bs[i-1].SortTime()) {
				t.Errorf("List is not newest first: %s before %s", bs[i-1].Name, bs[i].Name)
			}
		}
		var gotNames []string
		for _, b := range bs {
			gotNames = append(gotNames, b.Name)
		}
		// the named ones, by their timestamps; the unknown one is dated by its upload
		want := []string{"spywatcher_incremental_20240125_180000.dump.gz", "spywatcher_full_20240125_120000.dump.gz.gpg",
			"spywatcher_full_20240124_120000.dump.gz", "spywatcher_full_20240123_020000.sql.gz", "spywatcher_full_20240122_020000.dump"}
		if strings.Join(gotNames[1:], " ") != strings.Join(want, " ") || gotNames[0] != "notes.txt" {
			t.Errorf("List order = %v", gotNames)
		}
		for _, b := range bs {
			if b.Location != s.loc.Name() || b.Size != int64(len(contents[b.Name])) || b.Modified.IsZero() {
				t.Errorf("listed %+v", b)
			}
			if b.Name == "notes.txt" && b.Recognized() {
				t.Errorf("notes.txt recognised as %s", b.Kind)
			}
			for _, q := range []string{b.Name, b.Key} {
				st, err := s.loc.Stat(ctx, q)
				if err != nil {
					t.Fatalf("Stat %q: %v", q, err)
				}
				if st.Key != b.Key || st.Size != b.Size || st.Name != b.Name {
					t.Errorf("Stat %q = %+v, listed %+v", q, st, b)
				}
			}
			got, err := readAll(t, s.loc, b)
			if err != nil {
				t.Fatalf("read %s: %v", b.Name, err)
			}
			if !bytes.Equal(got, contents[b.Name]) {
				t.Errorf("read %s: %d bytes, not the %d put", b.Name, len(got), len(contents[b.Name]))
			}
		}
	})

	t.Run("missing backups are ErrNotFound", func(t *testing.T) {
		s := newSubject(t)
		if _, err := s.loc.Put(ctx, "spywatcher_full_20240125_120000.dump.gz", strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"spywatcher_full_20990101_000000.dump.gz", "nothing.txt", "postgres/full/nothing.dump"} {
			if _, err := s.loc.Stat(ctx, name); !errors.Is(err, ErrNotFound) {
				t.Errorf("Stat %q: %v; want ErrNotFound", name, err)
			}
		}
		b := ParseName("spywatcher_full_20990101_000000.dump.gz")
		b.Key = "postgres/full/" + b.Name
		if s3, ok := s.loc.(*S3); ok {
			b.Key = s3.prefix + b.Key
		}
		if _, err := readAll(t, s.loc, b); !errors.Is(err, ErrNotFound) {
			t.Errorf("Open of a missing backup: %v; want ErrNotFound", err)
		}
	})

	t.Run("put never overwrites", func(t *testing.T) {
		s := newSubject(t)
		name := "spywatcher_full_20240125_120000.dump.gz"
		if _, err := s.loc.Put(ctx, name, strings.NewReader("first")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.loc.Put(ctx, name, strings.NewReader("second")); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("second Put: %v; want already exists", err)
		}
		b, err := s.loc.Stat(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := readAll(t, s.loc, b); string(got) != "first" {
			t.Errorf("after a refused Put the backup reads %q", got)
		}
	})

	t.Run("a failing reader leaves nothing", func(t *testing.T) {
		s := newSubject(t)
		broken := errors.New("pg_dump died")
		for name, n := range map[string]int{"spywatcher_full_20240125_120000.dump.gz": 1000, "spywatcher_full_20240126_120000.dump.gz": 12 << 20} {
			_, err := s.loc.Put(ctx, name, &failingReader{r: bytes.NewReader(randomBytes(n+1, 4)), n: n, err: broken})
			if !errors.Is(err, broken) {
				t.Errorf("Put from a failing reader: %v; want its error", err)
			}
			if _, err := s.loc.Stat(ctx, name); !errors.Is(err, ErrNotFound) {
				t.Errorf("after a failed Put, Stat: %v; want ErrNotFound", err)
			}
		}
		if bs, err := s.loc.List(ctx); err != nil || len(bs) != 0 {
			t.Errorf("after failed Puts, List = %v, %v; want nothing", bs, err)
		}
	})

	t.Run("a backup changed after it was listed is refused", func(t *testing.T) {
		s := newSubject(t)
		b, err := s.loc.Put(ctx, "spywatcher_full_20240125_120000.dump.gz", bytes.NewReader(randomBytes(5000, 5)))
		if err != nil {
			t.Fatal(err)
		}
		s.overwrite(t, b, randomBytes(6000, 6))
		if _, err := readAll(t, s.loc, b); !errors.Is(err, ErrChanged) {
			t.Errorf("read of a replaced backup: %v; want ErrChanged", err)
		}
	})

	t.Run("names that escape are refused", func(t *testing.T) {
		s := newSubject(t)
		for _, name := range []string{"../etc/passwd", "a/../../b", ".."} {
			if _, err := s.loc.Put(ctx, name, strings.NewReader("x")); err == nil {
				t.Errorf("Put %q succeeded", name)
			}
			if _, err := s.loc.Stat(ctx, name); err == nil || errors.Is(err, ErrNotFound) {
				t.Errorf("Stat %q: %v; want a refusal", name, err)
			}
		}
	})
}
