package recovery

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// bigFixture is the app database plus a table big enough that a restore takes a while,
// with several indexes so pg_restore keeps working after it has read the whole stream.
func bigFixture(t *testing.T) (*fixture, string) {
	f := newFixture(t)
	f.c.Exec(t, f.db, `CREATE TABLE "Zbig" (id int PRIMARY KEY, a text, b text, c int);
		INSERT INTO "Zbig" SELECT g, md5(g::text), md5((g*7)::text), g % 1000 FROM generate_series(1, 150000) g;
		CREATE INDEX ON "Zbig" (a); CREATE INDEX ON "Zbig" (b); CREATE INDEX ON "Zbig" (a, b); CREATE INDEX ON "Zbig" (b, a); CREATE INDEX ON "Zbig" (c, a)`)
	name := f.pgDump(t, "spywatcher_full_20240125_120000.dump", "-Fc", "-Z0")
	run(t, nil, "gzip", "-1", f.path(name))
	return f, name + ".gz"
}

// childrenWith lists processes whose command line mentions s.
func childrenWith(s string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), s) {
			out = append(out, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

func TestRestoreCancel(t *testing.T) {
	f, name := bigFixture(t)
	for _, tc := range []struct {
		name string
		when func(e Event) bool
	}{
		// In the middle of the stream.
		{"streaming", func(e Event) bool { return e.Read > 0 && strings.Contains(e.Table, "Zbig") }},
		// After the whole stream was read, while pg_restore builds indexes.
		{"building indexes", func(e Event) bool { return strings.Contains(e.Message, "creating INDEX") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// pg_restore's own messages say when it builds indexes; TestParallelCancel
			// does the same with the parallel engine.
			plan, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Engine: EnginePgRestore})
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var cancelled time.Time
			var after, finals []Event
			_, err = plan.Restore(ctx, ReporterFunc(func(e Event) {
				mu.Lock()
				defer mu.Unlock()
				if e.Final {
					finals = append(finals, e)
				}
				if !cancelled.IsZero() {
					after = append(after, e)
				} else if tc.when(e) {
					cancelled = time.Now()
					cancel()
				}
			}))
			if cancelled.IsZero() {
				t.Fatalf("never cancelled; restore returned %v", err)
			}
			took := time.Since(cancelled)
			f.assertBad(t, err, ErrCancelled)
			if left := childrenWith(plan.Scratch); len(left) > 0 {
				t.Errorf("processes left: %v", left)
			}
			if len(finals) != 1 || !errors.Is(finals[0].Err, ErrCancelled) {
				t.Errorf("final events: %+v", finals)
			}
			indexes := 0
			for _, e := range after {
				if strings.Contains(e.Message, "creating INDEX") {
					indexes++
				}
			}
			if indexes >= 4 {
				t.Errorf("pg_restore went on creating %d indexes after the cancel (%s)", indexes, took)
			}
		})
	}
}

// pg_restore stops early (--exit-on-error): the rest of the backup is still read to its
// end, and the failure is pg_restore's, with its message.
func TestRestoreToolFailsEarly(t *testing.T) {
	f := newFixture(t)
	// A CHECK calling a function that names a table without its schema: fine live,
	// but pg_restore runs with an empty search_path, so COPY fails, a classic.
	f.c.Exec(t, f.db, `CREATE FUNCTION user_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM "User"';
		CREATE TABLE "Audit" (id int, CHECK (user_count() >= 0));
		INSERT INTO "Audit" VALUES (1);
		CREATE TABLE "Zbig" (id int, a text);
		INSERT INTO "Zbig" SELECT g, md5(g::text) FROM generate_series(1, 100000) g`)
	name := f.pgDump(t, "spywatcher_full_20240125_120000.dump", "-Fc")
	run(t, nil, "gzip", f.path(name))
	name += ".gz"
	ctx := context.Background()
	plan, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := plan.Restore(ctx, nil)
	f.assertBad(t, err, ErrRestoreTool)
	if !strings.Contains(err.Error(), "Audit") || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("error does not carry pg_restore's message: %v", err)
	}
	if r.Read != plan.Source.Backup.Size {
		t.Errorf("read %d of %d bytes: the stream was not read to its end", r.Read, plan.Source.Backup.Size)
	}
}
