package recovery

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestVerify(t *testing.T) {
	f := newFixture(t)
	good := f.backupJob(t, "20240125_120000")
	ctx := context.Background()

	c, err := Verify(ctx, f.source(t, good), f.keys(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Complete || c.DataBlocks < 4 || c.Archive == nil || len(c.Archive.Tables) != 4 || c.Read != c.Backup.Size || c.Dump <= c.Read {
		t.Errorf("contents = %+v", c)
	}
	var names []string
	for _, tb := range c.Archive.Tables {
		names = append(names, tb.QualifiedName())
	}
	if got := strings.Join(names, ","); !strings.Contains(got, "public.User") || !strings.Contains(got, "public.ApiKey") {
		t.Errorf("tables = %s", got)
	}

	f.pgDump(t, "plain.dump", "-Fc")
	sh(t, nil, `cd "`+f.dir+`" && zstd -q plain.dump && gzip -k plain.dump`)
	cases := []struct {
		name   string
		make   func() string
		keys   *Keys
		want   error
		inLoad bool // the damage is past the header, so Prepare passes and Restore must fail
	}{
		{"truncated", func() string {
			return f.mangle(t, good, "t.dump.gz.gpg", func(b []byte) []byte { return b[:len(b)*2/3] })
		}, f.keys(t), ErrTruncated, true},
		{"truncated by one byte", func() string {
			return f.mangle(t, good, "t1.dump.gz.gpg", func(b []byte) []byte { return b[:len(b)-1] })
		}, f.keys(t), ErrTruncated, true},
		{"flipped byte", func() string {
			return f.mangle(t, good, "f.dump.gz.gpg", func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b })
		}, f.keys(t), ErrCorrupt, true},
		{"gzip CRC", func() string {
			return f.mangle(t, "plain.dump.gz", "crc.dump.gz", func(b []byte) []byte { b[len(b)-8] ^= 0xff; return b })
		}, nil, ErrCorrupt, true},
		{"gzip length", func() string {
			return f.mangle(t, "plain.dump.gz", "len.dump.gz", func(b []byte) []byte { b[len(b)-1] ^= 0x01; return b })
		}, nil, ErrCorrupt, true},
		{"gzip truncated", func() string {
			return f.mangle(t, "plain.dump.gz", "tr.dump.gz", func(b []byte) []byte { return b[:len(b)-4] })
		}, nil, ErrTruncated, true},
		{"zstd truncated", func() string {
			return f.mangle(t, "plain.dump.zst", "tr.dump.zst", func(b []byte) []byte { return b[:len(b)*3/4] })
		}, nil, ErrTruncated, true},
		{"zstd flipped byte", func() string {
			return f.mangle(t, "plain.dump.zst", "fl.dump.zst", func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b })
		}, nil, ErrCorrupt, true},
		{"raw dump truncated", func() string {
			return f.mangle(t, "plain.dump", "tr.dump", func(b []byte) []byte { return b[:len(b)*3/4] })
		}, nil, ErrTruncated, true},
		{"wrong key", func() string { return good }, func() *Keys {
			ents, err := ReadKeyFile(newOtherKey(t))
			if err != nil {
				t.Fatal(err)
			}
			return &Keys{Entities: ents}
		}(), ErrWrongKey, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := tc.make()
			c, err := Verify(ctx, f.source(t, name), tc.keys, nil)
			if !errors.Is(err, tc.want) || c != nil && c.Complete {
				t.Fatalf("verify: err = %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is more than one line: %q", err)
			}
			plan, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: tc.keys})
			if !tc.inLoad || err != nil {
				// Refused before anything started (a small zstd frame is checked whole).
				f.assertBad(t, err, tc.want)
				return
			}
			var final []Event
			_, err = plan.Restore(ctx, ReporterFunc(func(e Event) {
				if e.Final {
					final = append(final, e)
				}
			}))
			f.assertBad(t, err, tc.want)
			if len(final) != 1 || !errors.Is(final[0].Err, tc.want) {
				t.Errorf("final events = %+v", final)
			}
		})
	}
}
