package recovery

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRestoreSwapsInBackupMadeByTheBackupJob(t *testing.T) {
	f := newFixture(t)
	name := f.backupJob(t, "20240125_120000")
	// The incident: the live data is damaged after the backup.
	f.c.Exec(t, f.db, `DELETE FROM "ApiKey" WHERE id % 2 = 0; UPDATE "User" SET username = 'corrupt' WHERE id < 10`)
	damaged := fingerprint(t, f.c, f.db)
	// Database-level properties pg_restore does not carry.
	f.c.Exec(t, "postgres", `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_reader') THEN CREATE ROLE app_reader; END IF; END $$`)
	f.c.Exec(t, "postgres", `ALTER DATABASE "`+f.db+`" SET work_mem = '7MB'; GRANT CONNECT ON DATABASE "`+f.db+`" TO app_reader; REVOKE CONNECT ON DATABASE "`+f.db+`" FROM PUBLIC`)

	ctx := context.Background()
	var events []Event
	plan, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: f.keys(t), Checks: shippedChecks(), Now: func() time.Time { return time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Mode != ModeSwap || !strings.HasSuffix(plan.Scratch, "_restore_20261125_030000") || !strings.HasSuffix(plan.Kept, "_pre_restore_20261125_030000") ||
		len(plan.Kept) > 63 || !strings.HasPrefix(plan.Kept, f.db[:20]) {
		t.Fatalf("plan: mode %s scratch %s kept %s", plan.Mode, plan.Scratch, plan.Kept)
	}
	if got := len(plan.Contents.Archive.Tables); got != 4 {
		t.Errorf("archive tables = %d, want 4", got)
	}
	r, err := plan.Restore(ctx, ReporterFunc(func(e Event) { events = append(events, e) }))
	if err != nil {
		t.Fatal(err)
	}
	if got := fingerprint(t, f.c, plan.Scratch); got != f.print {
		t.Fatalf("scratch database differs from the backed-up data:\n got %s\nwant %s", got, f.print)
	}
	if fingerprint(t, f.c, f.db) != damaged {
		t.Fatal("live database changed before the swap")
	}
	last := events[len(events)-1]
	if !last.Final || last.Err != nil || last.TablesDone != 4 || last.TablesTotal != 4 || last.Read != plan.Source.Backup.Size {
		t.Errorf("final event = %+v", last)
	}
	if failed := Failed(r.Checks); len(failed) > 0 {
		t.Fatalf("blocking checks failed: %+v", failed)
	}
	var users string
	for _, c := range r.Checks {
		if strings.HasPrefix(c.Name, "users") {
			users = c.Actual + "/" + c.Expected
		}
	}
	if users != "500/500" {
		t.Errorf("users check actual/expected = %q", users)
	}

	sw, err := r.Swap(ctx, nil, SwapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fingerprint(t, f.c, f.db); got != f.print {
		t.Errorf("after swap the live database is not the backup:\n got %s\nwant %s", got, f.print)
	}
	if got := fingerprint(t, f.c, sw.Kept); got != damaged {
		t.Errorf("kept database is not the damaged one")
	}
	props := f.c.Query(t, "postgres", `SELECT array_to_string(setconfig, ','), (SELECT datacl::text FROM pg_database WHERE datname = '`+f.db+`'), (SELECT datallowconn FROM pg_database WHERE datname = '`+sw.Kept+`')
		FROM pg_db_role_setting WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = '`+f.db+`')`)
	if len(props) != 1 || props[0][0] != "work_mem=7MB" || !strings.Contains(props[0][1], "app_reader=c/") || !strings.Contains(props[0][1], ",=T/") || strings.Contains(props[0][1], "=Tc/") || props[0][2] != "t" {
		t.Errorf("database properties not carried over: %v", props)
	}
	if left := f.databasesLike(t, f.db+"_restore_"); len(left) > 0 {
		t.Errorf("scratch left: %v", left)
	}
}

func TestRestoreRefusesBadInputAndLeavesLiveUntouched(t *testing.T) {
	f := newFixture(t)
	good := f.backupJob(t, "20240125_120000")
	other := f.backupJob(t, "20240124_120000") // replaced below by one for another key
	_ = other
	cases := []struct {
		name  string
		setup func(t *testing.T) (string, *Keys, *Conn)
		want  error
	}{
		{"wrong key", func(t *testing.T) (string, *Keys, *Conn) {
			ents, err := ReadKeyFile(newOtherKey(t))
			if err != nil {
				t.Fatal(err)
			}
			return good, &Keys{Entities: ents}, f.conn(t)
		}, ErrWrongKey},
		{"no key", func(t *testing.T) (string, *Keys, *Conn) { return good, nil, f.conn(t) }, ErrNoKey},
		{"truncated", func(t *testing.T) (string, *Keys, *Conn) {
			return f.mangle(t, good, "trunc.dump.gz.gpg", func(b []byte) []byte { return b[:len(b)*2/3] }), f.keys(t), f.conn(t)
		}, ErrTruncated},
		{"flipped byte", func(t *testing.T) (string, *Keys, *Conn) {
			return f.mangle(t, good, "flip.dump.gz.gpg", func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b }), f.keys(t), f.conn(t)
		}, ErrCorrupt},
		{"random bytes", func(t *testing.T) (string, *Keys, *Conn) {
			return f.write(t, "spywatcher_full_20240101_000000.dump.gz.gpg", randomBytes(4096)), f.keys(t), f.conn(t)
		}, ErrNotBackup},
		{"empty file", func(t *testing.T) (string, *Keys, *Conn) {
			return f.write(t, "spywatcher_full_20240102_000000.dump.gz", nil), f.keys(t), f.conn(t)
		}, ErrNotBackup},
		{"plain file with a backup's name", func(t *testing.T) (string, *Keys, *Conn) {
			return f.write(t, "spywatcher_full_20240103_000000.dump.gz", []byte("just some notes\x00\x01 not a dump\n")), f.keys(t), f.conn(t)
		}, ErrNotBackup},
		{"server down", func(t *testing.T) (string, *Keys, *Conn) {
			c := f.conn(t)
			c.cfg.Port, c.Port = 1, 1
			return good, f.keys(t), c
		}, ErrDatabase},
		{"typo'd database name", func(t *testing.T) (string, *Keys, *Conn) {
			return good, f.keys(t), f.conn(t).With(f.db[:len(f.db)-1] + "x")
		}, ErrDatabase},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name, keys, conn := tc.setup(t)
			err := restoreAll(t, f.source(t, name), Options{Conn: conn, Keys: keys})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is more than one line: %q", err)
			}
			f.assertUntouched(t, f.print)
		})
	}
}

// restoreAll runs Prepare and Restore and, on success, Swap.
func restoreAll(t *testing.T, src Source, opts Options) error {
	ctx := context.Background()
	plan, err := Prepare(ctx, src, opts)
	if err != nil {
		return err
	}
	r, err := plan.Restore(ctx, nil)
	if err != nil {
		return err
	}
	_, err = r.Swap(ctx, nil, SwapOptions{})
	return err
}
