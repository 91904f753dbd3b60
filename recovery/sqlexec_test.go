package recovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// replay loads sql into a new database of the fixture's cluster with execPlain and
// returns the database, the tables reported and the error.
func (f *fixture) replay(t *testing.T, ctx context.Context, sql io.Reader) (db string, tables []string, notices *noticeLog, err error) {
	t.Helper()
	db = f.c.NewDB(t)
	notices = &noticeLog{}
	pc, err := f.conn(t).connectPg(ctx, db, notices)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(context.Background())
	err = execPlain(ctx, pc, sql, func(done int, table string) {
		if done != len(tables)+1 {
			t.Errorf("onTable(%d, %q) after %d tables", done, table, len(tables))
		}
		tables = append(tables, table)
	}, nil)
	return db, tables, notices, err
}

// assertEmpty checks nothing of a failed replay was committed in db.
func (f *fixture) assertEmpty(t *testing.T, db string) {
	t.Helper()
	rows := f.c.Query(t, db, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')`)
	if rows[0][0] != "0" {
		t.Errorf("%s relations were committed in %s", rows[0][0], db)
	}
}

func (f *fixture) plainDump(t *testing.T, args ...string) []byte {
	t.Helper()
	name := f.pgDump(t, fmt.Sprintf("plain%d.sql", time.Now().UnixNano()), append([]string{"-Fp"}, args...)...)
	b, err := os.ReadFile(f.path(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A real pg_dump -Fp of the application's schema comes back row for row: quoted
// PascalCase tables, an enum, bytea, arrays, text with tabs, newlines, quotes and
// backslashes, a SQL-standard function body, pg_dump's \restrict lines.
func TestExecPlainRestoresPgDump(t *testing.T) {
	f := newFixture(t)
	f.c.Exec(t, f.db, `CREATE FUNCTION public.bump(a integer) RETURNS integer LANGUAGE sql
		BEGIN ATOMIC SELECT a + 1; SELECT CASE WHEN a > 0 THEN 1 ELSE 2 END; END;
		CREATE VIEW public.v AS SELECT (tags)[1:2] AS t, E'\\' AS b FROM "User";
		COMMENT ON TABLE "User" IS 'it''s ; \ here';
		INSERT INTO "Session" VALUES ('s2', 2, E'\\.\nback\\slash; ''quote'' \\connect x\n\\.');`)
	f.print = fingerprint(t, f.c, f.db)
	dump := f.plainDump(t)
	if !bytes.Contains(dump, []byte("\n\\restrict ")) {
		t.Log("this pg_dump writes no \\restrict line")
	}
	db, tables, _, err := f.replay(t, context.Background(), &tinyReader{r: bytes.NewReader(dump)})
	if err != nil {
		t.Fatal(err)
	}
	if got := fingerprint(t, f.c, db); got != f.print {
		t.Errorf("restored differs:\n got %s\nwant %s", got, f.print)
	}
	if want := []string{`public."ApiKey"`, `public."Guild"`, `public."Session"`, `public."User"`}; strings.Join(tables, " ") != strings.Join(want, " ") {
		t.Errorf("tables = %q, want %q", tables, want)
	}
	if got := f.c.Query(t, db, `SELECT public.bump(1), obj_description('"User"'::regclass)`); got[0][0] != "1" || got[0][1] != `it's ; \ here` {
		t.Errorf("function and comment: %q", got)
	}
}

// pg_dump --inserts: runs of INSERT statements go several to a message, with the same result.
func TestExecPlainRestoresInserts(t *testing.T) {
	f := newFixture(t)
	for _, args := range [][]string{{"--inserts"}, {"--rows-per-insert=7"}, {"--column-inserts", "-E", "LATIN1"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			db, _, _, err := f.replay(t, context.Background(), bytes.NewReader(f.plainDump(t, args...)))
			if err != nil {
				t.Fatal(err)
			}
			if got := fingerprint(t, f.c, db); got != f.print {
				t.Errorf("restored differs:\n got %s\nwant %s", got, f.print)
			}
		})
	}
}

// The statement of a batch that fails is named by its own line, whether it failed
// running (the statements before it completed) or parsing (none did).
func TestExecPlainInsertBatchErrors(t *testing.T) {
	f := newFixture(t)
	head := "CREATE TABLE t (a int PRIMARY KEY, b text);\n"
	rows := func(bad string) string {
		var sb strings.Builder
		sb.WriteString(head)
		for i := 1; i <= 2500; i++ {
			if i == 1717 {
				sb.WriteString(bad + "\n")
				continue
			}
			fmt.Fprintf(&sb, "INSERT INTO t VALUES (%d, 'é row %d');\n", i, i)
		}
		return sb.String()
	}
	for _, tc := range []struct{ name, bad, want string }{
		{"duplicate key", "INSERT INTO t VALUES (1, 'again');", "SQL dump line 1718: duplicate key value"},
		{"syntax error", "INSERT INTO t VALUES (1717, 'ö' ';", "SQL dump line 1718: syntax error"},
		{"run-time error", "INSERT INTO t VALUES (1/0, 'x');", "SQL dump line 1718: division by zero"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _, _, err := f.replay(t, context.Background(), strings.NewReader(rows(tc.bad)))
			if !errors.Is(err, ErrRestoreTool) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			f.assertEmpty(t, db)
		})
	}
	// A batch that switches standard_conforming_strings under the lexer is refused.
	sql := head + `CREATE FUNCTION flip() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); RETURN NEW; END $$;
CREATE TRIGGER flip BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION flip();
INSERT INTO t VALUES (1, 'a');
INSERT INTO t VALUES (2, 'b');
SELECT 'x'; SELECT 1;
`
	db, _, _, err := f.replay(t, context.Background(), strings.NewReader(sql))
	if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "standard_conforming_strings") {
		t.Fatalf("err = %v", err)
	}
	f.assertEmpty(t, db)
}

// A dump in LATIN1 is read by the server as LATIN1: the dump's own SET client_encoding.
func TestExecPlainClientEncoding(t *testing.T) {
	f := newFixture(t)
	f.c.Exec(t, f.db, `INSERT INTO "Session" VALUES ('latin', 1, 'Zürich ñ ß é');`)
	f.print = fingerprint(t, f.c, f.db)
	dump := f.plainDump(t, "-E", "LATIN1")
	if !bytes.Contains(dump, []byte("SET client_encoding = 'LATIN1'")) || !bytes.Contains(dump, []byte("Z\xfcrich")) {
		t.Fatal("the dump is not in LATIN1")
	}
	db, _, _, err := f.replay(t, context.Background(), bytes.NewReader(dump))
	if err != nil {
		t.Fatal(err)
	}
	if got := fingerprint(t, f.c, db); got != f.print {
		t.Errorf("restored differs:\n got %s\nwant %s", got, f.print)
	}
}

// A statement the server refuses stops the replay with its line; nothing is committed.
func TestExecPlainStatementFails(t *testing.T) {
	f := newFixture(t)
	dump := string(f.plainDump(t))
	i := strings.Index(dump, "\nCOPY public.\"Session\"")
	line := strings.Count(dump[:i+1], "\n") + 1
	bad := dump[:i+1] + "SELECT 1/0;\n" + dump[i+1:]
	db, _, _, err := f.replay(t, context.Background(), strings.NewReader(bad))
	if !errors.Is(err, ErrRestoreTool) || !strings.Contains(err.Error(), fmt.Sprintf("SQL dump line %d: division by zero", line)) {
		t.Fatalf("err = %v, want line %d", err, line)
	}
	f.assertEmpty(t, db)

	// Bad COPY data: the error names the data line.
	i = strings.Index(dump, "\nCOPY public.\"Guild\"")
	j := i + 1 + strings.Index(dump[i+1:], "\n") + 1 // the first data line
	line = strings.Count(dump[:j], "\n") + 1 + 1
	bad = dump[:j] + strings.Replace(dump[j:], "\n", "\n\n", 1) // the second data line is empty: too few columns
	db, _, _, err = f.replay(t, context.Background(), strings.NewReader(bad))
	if !errors.Is(err, ErrRestoreTool) || !strings.Contains(err.Error(), fmt.Sprintf("SQL dump line %d:", line)) {
		t.Fatalf("err = %v, want line %d", err, line)
	}
	f.assertEmpty(t, db)
}

// A backup that fails to read halfway through COPY data commits nothing and says why.
func TestExecPlainReadErrorInCopy(t *testing.T) {
	f := newFixture(t)
	dump := f.plainDump(t)
	i := bytes.Index(dump, []byte("\nCOPY public.\"User\""))
	cut := i + 2000
	damaged := fmt.Errorf("%w: gzip checksum mismatch", ErrCorrupt)
	r := io.MultiReader(bytes.NewReader(dump[:cut]), iotestErrReader{damaged})
	db, _, _, err := f.replay(t, context.Background(), r)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
	f.assertEmpty(t, db)
}

// Hostile dumps: nothing they hold reaches past the one connection to the scratch
// database, and what psql would have run is refused.
func TestExecPlainHostileDumps(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "pwned")
	header := "SET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\nCREATE TABLE t (a text);\n"
	cases := []struct {
		name string
		sql  string
		want error
	}{
		{"connect to the live database", header + "\\connect " + f.db + "\nDELETE FROM \"Session\";\n", ErrPreflight},
		{"c and a tab", header + "\\c\t" + f.db + "\nDELETE FROM \"Session\";\n", ErrPreflight},
		{"connect after a statement", header + "SELECT 1; \\connect " + f.db + "\nDELETE FROM \"Session\";\n", ErrPreflight},
		{"shell", header + "\\! touch " + file + "\n", ErrPreflight},
		{"shell after a semicolon", header + "SELECT 1;\\! touch " + file + "\n", ErrPreflight},
		{"COPY spoof", header + "CREATE TABLE stdin (a int);\nCOPY (SELECT 1) TO STDOUT; SELECT 1 FROM stdin;\n\\! touch " + file + "\n\\.\n", ErrPreflight},
		{"standard_conforming_strings", "SET standard_conforming_strings = off;\nCREATE TABLE t (a text);\nINSERT INTO t VALUES ('a\\'' );\n\\! touch " + file + "\n');\n", ErrPreflight},
		{"string ending in a backslash", header + "INSERT INTO t VALUES ('a\\'); \\! touch " + file + "\n", ErrPreflight},
		{"backtick", header + "\\set x `touch " + file + "`\n", ErrPreflight},
		{"create database", header + "CREATE DATABASE " + f.db + "_evil;\n", ErrPreflight},
		{"alter database", header + "ALTER DATABASE " + f.db + " SET search_path = evil;\n", ErrPreflight},
		{"alter system", header + "ALTER SYSTEM SET log_min_messages = 'panic';\n", ErrPreflight},
		{"commit in the middle", header + "COMMIT;\nCREATE TABLE u (a int);\n", ErrPreflight},
		// Not in pg_dump's COPY form: the server is told there is no data, and fails it.
		{"COPY with options", header + "COPY t FROM stdin WITH (FORMAT text);\nx\n\\.\n", ErrRestoreTool},
		{"COPY with more on its line", header + "COPY t FROM stdin; SELECT 1;\nx\n\\.\n", ErrRestoreTool},
		{"COPY to the client", header + "COPY (SELECT 1) TO STDOUT;\nSELECT 1/0;\n", ErrRestoreTool},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			db, _, _, err := f.replay(t, ctx, &tinyReader{r: strings.NewReader(c.sql)})
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			t.Log(err)
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is more than one line: %q", err)
			}
			if _, serr := os.Stat(file); serr == nil {
				t.Fatalf("%s was created", file)
			}
			if c.name != "commit in the middle" {
				f.assertEmpty(t, db)
			} else if got := f.c.Query(t, db, `SELECT count(*) FROM pg_class WHERE relname = 'u'`); got[0][0] != "0" {
				t.Error("the statement after the dump's COMMIT ran")
			}
			if contains(f.c.Databases(t), f.db+"_evil") {
				t.Error("a database was created")
			}
			f.assertUntouched(t, f.print)
			if got := f.c.Query(t, f.db, `SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database()`); got[0][0] != "0" {
				t.Error("the live database's settings changed")
			}
		})
	}
}

// The server's warnings are kept, in one line each; other notices are not.
func TestExecPlainNotices(t *testing.T) {
	f := newFixture(t)
	sql := "DO $$ BEGIN RAISE WARNING E'careful\\n%\\x1b[2J', 1; RAISE NOTICE 'fine'; END $$;\nCREATE TABLE x (a int);\nDROP TABLE IF EXISTS nothing_here;\n"
	_, _, notices, err := f.replay(t, context.Background(), strings.NewReader(sql))
	if err != nil {
		t.Fatal(err)
	}
	got := notices.warnings()
	if len(got) != 1 || got[0] != "WARNING: careful 1?[2J" {
		t.Errorf("warnings = %q", got)
	}
}

// A cancel ends a running statement and a COPY in flight; nothing is committed.
func TestExecPlainCancel(t *testing.T) {
	f := newFixture(t)
	t.Run("statement", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// Cancelled once connected and reading the dump, during the sleep.
		var start time.Time
		sql := &atEOF{r: strings.NewReader("CREATE TABLE t (a int);\nSELECT pg_sleep(60);\n"), then: func() {
			start = time.Now()
			time.AfterFunc(300*time.Millisecond, cancel)
		}}
		db, _, _, err := f.replay(t, ctx, sql)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("took %s to stop", d)
		}
		f.c.Exec(t, "postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '"+db+"' AND pid <> pg_backend_pid()")
		f.assertEmpty(t, db)
	})
	t.Run("COPY", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rows := &cancellingReader{cancel: cancel, after: 1 << 20}
		sql := io.MultiReader(strings.NewReader("CREATE TABLE t (a int, b text);\nCOPY t (a, b) FROM stdin;\n"), rows)
		db, _, _, err := f.replay(t, ctx, sql)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		f.assertEmpty(t, db)
	})
}

// cancellingReader yields COPY rows without end and calls cancel once after bytes.
type cancellingReader struct {
	cancel func()
	after  int
	n      int
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	row := []byte("1\tsome text\n")
	n := 0
	for n+len(row) <= len(p) {
		n += copy(p[n:], row)
	}
	if c.n += n; c.n > c.after {
		c.cancel()
	}
	return n, nil
}

// atEOF calls then when r ends.
type atEOF struct {
	r    io.Reader
	then func()
}

func (a *atEOF) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if err == io.EOF && a.then != nil {
		a.then()
		a.then = nil
	}
	return n, err
}

// A damaged plain backup is reported as damaged, not as the SQL it decodes to, and
// nothing is committed: the dump is only committed once every layer has checked its end.
func TestRestorePlainDamagedBackup(t *testing.T) {
	f := newFixture(t)
	f.pgDump(t, "plain.sql", "-Fp")
	run(t, nil, "gzip", f.path("plain.sql"))
	good := "plain.sql.gz"
	for _, tc := range []struct {
		name   string
		change func([]byte) []byte
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)*2/3] }},
		{"flipped", func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b }},
		{"bad checksum", func(b []byte) []byte { b[len(b)-8] ^= 0xff; return b }}, // every row decodes
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := f.mangle(t, good, "spywatcher_full_20240101_000000_"+strings.ReplaceAll(tc.name, " ", "")+".sql.gz", tc.change)
			err := restoreAll(t, f.source(t, name), Options{Conn: f.conn(t)})
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTruncated) {
				t.Fatalf("err = %v, want ErrCorrupt or ErrTruncated", err)
			}
			t.Log(err)
			f.assertUntouched(t, f.print)
		})
	}
}
