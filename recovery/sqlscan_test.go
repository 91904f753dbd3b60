package recovery

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"drconsole/internal/pgtest"
)

// tinyReader hands out 1 to 3 bytes a read, so tokens, quotes and line ends straddle reads.
type tinyReader struct {
	r io.Reader
	n int
}

func (t *tinyReader) Read(p []byte) (int, error) {
	t.n++
	return t.r.Read(p[:min(len(p), 1+t.n%3)])
}

// split runs the scanner over sql read in tiny pieces, standard_conforming_strings
// following the dump's SET statements as the server would, and returns the statements,
// each COPY's data as one more item "data:…".
func split(t *testing.T, sql string) ([]string, error) {
	t.Helper()
	s := newSQLScanner(&tinyReader{r: strings.NewReader(sql)})
	var out []string
	for {
		st, err := s.next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, string(st.text))
		if st.copy {
			var data bytes.Buffer
			if _, err := io.Copy(&data, &tinyReader{r: s.copyData()}); err != nil {
				return out, err
			}
			out = append(out, "data:"+data.String()+"|table:"+st.table)
		}
		if on, ok := setsStandardStrings(st.toks); ok {
			s.stdStrings = on
		}
	}
}

// splitCases are split as psql splits them (TestSQLScanMatchesPsql checks), except those
// in notPsql.
var splitCases = []struct {
	name string
	sql  string
	want []string
}{
	{"statements", "SET x = 1;\nCREATE TABLE t (a text);\n\n", []string{"SET x = 1;", "CREATE TABLE t (a text);"}},
	{"several on a line", "SELECT 1;SELECT 2; SELECT 3;", []string{"SELECT 1;", "SELECT 2;", "SELECT 3;"}},
	{"quotes", "SELECT 'a;b', 'it''s;';", []string{"SELECT 'a;b', 'it''s;';"}},
	{"backslash in a plain string, standard_conforming_strings on", `SELECT 'a\';` + "\nSELECT 2;", []string{`SELECT 'a\';`, "SELECT 2;"}},
	{"E string", `SELECT E'a\';b', e'\\';`, []string{`SELECT E'a\';b', e'\\';`}},
	{"E string escaped newline", "SELECT E'a\\\n;';", []string{"SELECT E'a\\\n;';"}},
	{"U& B X N strings", `SELECT U&'d\0061t;a', B'01', X'f;f', N'x;y', n'\';`, []string{`SELECT U&'d\0061t;a', B'01', X'f;f', N'x;y', n'\';`}},
	{"a word ending in e is no E string", `SELECT some'x\';`, []string{`SELECT some'x\';`}},
	{"quoted identifiers", `SELECT 1 AS "a;""b", 2 AS U&"c;d";`, []string{`SELECT 1 AS "a;""b", 2 AS U&"c;d";`}},
	{"dollar quotes", "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\nSELECT $fn$ ; $$ ; $f$ ; $fn$;",
		[]string{"CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;", "SELECT $fn$ ; $$ ; $f$ ; $fn$;"}},
	{"$1 and a$b$ are no dollar quotes", "SELECT $1; SELECT a$b$ FROM t; SELECT $2$x$;$x$;",
		[]string{"SELECT $1;", "SELECT a$b$ FROM t;", "SELECT $2$x$;$x$;"}},
	{"a lone $ then a word", "SELECT $e'\\';' ;SELECT 2;", []string{"SELECT $e'\\';' ;", "SELECT 2;"}},
	{"comments", "-- a ; comment\nSELECT 1 /* ; /* nested ; */ still ; */ + 2; -- after\n", []string{"SELECT 1 /* ; /* nested ; */ still ; */ + 2;"}},
	{"operator then comment", "SELECT 1 +/* ; */ 2 --;\n;", []string{"SELECT 1 +/* ; */ 2 --;\n;"}},
	{"parentheses", "SELECT (1;\n2);\nSELECT ((3));", []string{"SELECT (1;\n2);", "SELECT ((3));"}},
	{"unbalanced close parenthesis", "SELECT 1);SELECT 2;", []string{"SELECT 1);", "SELECT 2;"}},
	{"BEGIN ATOMIC", "CREATE FUNCTION public.f(a integer) RETURNS integer\n    LANGUAGE sql\n    BEGIN ATOMIC\n SELECT (a + 1);\n SELECT\n        CASE\n            WHEN (a > 0) THEN 1\n            ELSE 2\n        END AS \"case\";\nEND;\nSELECT 2;",
		[]string{"CREATE FUNCTION public.f(a integer) RETURNS integer\n    LANGUAGE sql\n    BEGIN ATOMIC\n SELECT (a + 1);\n SELECT\n        CASE\n            WHEN (a > 0) THEN 1\n            ELSE 2\n        END AS \"case\";\nEND;", "SELECT 2;"}},
	{"CREATE OR REPLACE PROCEDURE", "create or replace procedure p() begin atomic insert into t values (1); end;select 1;",
		[]string{"create or replace procedure p() begin atomic insert into t values (1); end;", "select 1;"}},
	{"BEGIN outside a function body", "BEGIN; SELECT 1; END;", []string{"BEGIN;", "SELECT 1;", "END;"}},
	{"quote continuation", "SELECT 'a'\n  'b;c', 'd' 'e;';", []string{"SELECT 'a'\n  'b;c', 'd' 'e;';"}},
	{"continuation keeps the E state", "SELECT E'x' -- c\n'\\';';", []string{"SELECT E'x' -- c\n'\\';';"}},
	{"no continuation after B string", "SET standard_conforming_strings = off;\nSELECT B'0''\\';';", []string{"SET standard_conforming_strings = off;", "SELECT B'0''\\';';"}},
	{"numbers", "SELECT 1.5$a$;$a$; SELECT 0x1F, 1_000, .5e-3, 1..2;", []string{"SELECT 1.5$a$;$a$;", "SELECT 0x1F, 1_000, .5e-3, 1..2;"}},
	{"numbers run into identifiers", "SELECT 1e5$a$; SELECT 2;", []string{"SELECT 1e5$a$;", "SELECT 2;"}},
	{"CRLF", "SELECT 1;\r\nSELECT 'a\r\nb';\r\n", []string{"SELECT 1;", "SELECT 'a\r\nb';"}},
	{"last line without newline", "SELECT 1;\nSELECT 2", []string{"SELECT 1;", "SELECT 2"}},
	{"unterminated string at the end goes to the server", "SELECT 'abc", []string{"SELECT 'abc"}},
	{"psql variables are plain text", "SELECT :'DBNAME', a::text, b[1:2];", []string{"SELECT :'DBNAME', a::text, b[1:2];"}},
	{"standard_conforming_strings off", "SET standard_conforming_strings = off;\nSELECT 'a\\';b';\nSET standard_conforming_strings TO 'on';\nSELECT 'c\\';",
		[]string{"SET standard_conforming_strings = off;", "SELECT 'a\\';b';", "SET standard_conforming_strings TO 'on';", "SELECT 'c\\';"}},
	{"backslashes inside quotes and comments", "SELECT E'\\\\', '\\', \"\\\", $$\\! x$$ /* \\c */ -- \\connect\n;",
		[]string{"SELECT E'\\\\', '\\', \"\\\", $$\\! x$$ /* \\c */ -- \\connect\n;"}},
	{"restrict lines", "--\n\\restrict sJZ1NGA3h3WEzQGEwr84Ntvv\n\nSELECT 1;\n\\unrestrict sJZ1NGA3h3WEzQGEwr84Ntvv\r\n", []string{"SELECT 1;"}},
	{"restrict on the last line", "SELECT 1;\n\\unrestrict abc", []string{"SELECT 1;"}},
	{"COPY", "COPY public.\"User\" (id, \"discordId\") FROM stdin;\n1\t\\\\connect x\n\\connect\t2\nCREATE DATABASE x\t3\n\\.\nSELECT 2;\n",
		[]string{"COPY public.\"User\" (id, \"discordId\") FROM stdin;", "data:1\t\\\\connect x\n\\connect\t2\nCREATE DATABASE x\t3\n|table:public.\"User\"", "SELECT 2;"}},
	{"COPY with CRLF", "copy t from STDIN ; \r\na\r\n\\.\r\n", []string{"copy t from STDIN ;", "data:a\r\n|table:t"}},
	{"COPY data to the end", "COPY t FROM stdin;\na\nb", []string{"COPY t FROM stdin;", "data:a\nb|table:t"}},
	{"COPY end marker at the end", "COPY t FROM stdin;\na\n\\.", []string{"COPY t FROM stdin;", "data:a\n|table:t"}},
	{"COPY without data", "COPY t FROM stdin;\n\\.\n", []string{"COPY t FROM stdin;", "data:|table:t"}},
	{"\\. inside a data line", "COPY t FROM stdin;\na\\.\n \\.\n\\.x\n\\.\n", []string{"COPY t FROM stdin;", "data:a\\.\n \\.\n\\.x\n|table:t"}},
	// Not in pg_dump's form: sent to the server as a statement (the executor fails it);
	// the lines after it are SQL again.
	{"COPY spoof", "COPY (SELECT 1) TO STDOUT; SELECT 1 FROM stdin;\nSELECT 2;", []string{"COPY (SELECT 1) TO STDOUT;", "SELECT 1 FROM stdin;", "SELECT 2;"}},
	{"COPY with more on its line", "COPY t FROM stdin; SELECT 1;\n", []string{"COPY t FROM stdin;", "SELECT 1;"}},
	{"COPY with options", "COPY t FROM stdin WITH (FORMAT csv);\n", []string{"COPY t FROM stdin WITH (FORMAT csv);"}},
	{"COPY from a quoted stdin", "COPY t FROM \"stdin\";\n", []string{"COPY t FROM \"stdin\";"}},
}

var notPsql = map[string]string{
	// psql lexes a file line by line, without the newline, so the newline SQL requires
	// between the parts of a continued string never reaches its lexer: psql never joins
	// them, and sends what the server then finds unterminated. The scanner follows the
	// server, which parses what it is sent.
	"continuation keeps the E state": "psql never continues a string across lines",
	// PostgreSQL 16 made 1e5$a$ one token ("trailing junk"); psql 15 reads 1e5 then $a$.
	"numbers run into identifiers": "lexed by the PostgreSQL 16 rules",
	// Only psql substitutes its variables.
	"psql variables are plain text": "psql substitutes :'DBNAME'",
}

func TestSQLScanSplitsAsPsql(t *testing.T) {
	for _, c := range splitCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := split(t, c.sql)
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if strings.Join(got, "\x00") != strings.Join(c.want, "\x00") {
				t.Errorf("statements:\n got %q\nwant %q", got, c.want)
			}
			if err := scanSQLHead(bufio.NewReader(strings.NewReader(c.sql))); err != nil {
				t.Errorf("head scan: %v", err)
			}
		})
	}
}

// What psql itself sends, as its query log (-L) records it, is what the scanner splits.
func TestSQLScanMatchesPsql(t *testing.T) {
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	dir := t.TempDir()
	for i, tc := range splitCases {
		if notPsql[tc.name] != "" || strings.Contains(strings.Join(tc.want, ""), "data:") {
			continue // COPY data would need its table
		}
		t.Run(tc.name, func(t *testing.T) {
			in, log := filepath.Join(dir, fmt.Sprint(i, ".sql")), filepath.Join(dir, fmt.Sprint(i, ".log"))
			if err := os.WriteFile(in, []byte(tc.sql), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(filepath.Join(c.BinDir, "psql"), "--no-psqlrc", "--quiet", "--log-file", log, "--file", in, "--output", os.DevNull, db)
			cmd.Env = append(os.Environ(), c.Env(db)...)
			cmd.Run() // the statements may fail: only what psql sends matters
			logged, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			var sent []string
			for _, part := range strings.Split(string(logged), "********* QUERY **********\n")[1:] {
				q, _, _ := strings.Cut(part, "\n**************************\n")
				sent = append(sent, q)
			}
			got, err := split(t, tc.sql)
			if err != nil {
				t.Fatal(err)
			}
			// psql drops blank space at the start of a statement; the bounds must agree.
			if a, b := fieldsOf(sent), fieldsOf(got); a != b {
				t.Errorf("psql sent %s\n  scanner %s", a, b)
			}
		})
	}
}

func fieldsOf(stmts []string) string {
	var out []string
	for _, s := range stmts {
		out = append(out, strings.Join(strings.Fields(s), " "))
	}
	return strings.Join(out, " ‖ ")
}

func TestSQLScanRefuses(t *testing.T) {
	cases := []struct {
		name string
		sql  string
		line string // in the error: "line N"
		what string // in the error
	}{
		{"connect", "\\connect spywatcher\nSELECT 1;\n", "line 1 ", `psql's \connect meta-command`},
		{"c and a tab", "SELECT 1;\n\\c\tspywatcher\n", "line 2 ", `\c meta-command`},
		{"after a statement on its line", "SELECT 1; \\connect spywatcher", "line 1 ", `\connect`},
		{"right after a semicolon", "SELECT 1;\\! touch x\n", "line 1 ", `\!`},
		{"inside a statement", "SELECT 1\n\\g\n", "line 2 ", `\g meta-command`},
		{"shell", "\n\n\\! touch /tmp/x\n", "line 3 ", `\!`},
		{"output", "\\o /tmp/x\n", "line 1 ", `\o`},
		{"copy", "\\copy t from '/etc/passwd'\n", "line 1 ", `\copy`},
		{"include", "\\i /tmp/x.sql\n", "line 1 ", `\i`},
		{"include relative", "\\ir x.sql\n", "line 1 ", `\ir`},
		{"gexec", "SELECT 'DROP DATABASE x' \\gexec\n", "line 1 ", `\gexec`},
		{"setenv", "\\setenv PGHOST evil\n", "line 1 ", `\setenv`},
		{"set", "\\set ON_ERROR_STOP off\n", "line 1 ", `\set`},
		{"lo_export", "\\lo_export 1 /tmp/x\n", "line 1 ", `\lo_export`},
		{"backtick", "\\echo `touch x`\n", "line 1 ", `\echo`},
		{"forced semicolon", "SELECT 1 \\; SELECT 2;\n", "line 1 ", `\;`},
		{"end of COPY data outside COPY", "SELECT 1;\n\\.\n", "line 2 ", `\.`},
		{"after a string ending in a backslash", "SELECT 'abc\\'; \\! touch x';\n", "line 1 ", `\!`},
		{"standard_conforming_strings off", "SET standard_conforming_strings = off;\nSELECT 'a\\'' ;\n\\! touch x\n';\n", "line 3 ", `\!`},
		{"after COPY data", "COPY public.t (a) FROM stdin;\nx\n\\.\n\\connect spywatcher\n", "line 4 ", `\connect`},
		{"COPY spoof", "COPY (SELECT 1) TO STDOUT; SELECT 1 FROM stdin;\n\\! touch x\n\\.\n", "line 2 ", `\!`},
		{"restrict inside a statement", "SELECT 1\n\\restrict abc\n;\n", "line 2 ", `\restrict`},
		{"restrict with more on its line", "\\restrict abc def\n", "line 1 ", `\restrict`},
		{"restrict with a bad key", "\\restrict a;b\n", "line 1 ", `\restrict`},
		{"restrict not at the line start", " \\restrict abc\n", "line 1 ", `\restrict`},
		{"a name that is not printable", "\\c\x1b[2J\n", "line 1 ", `"\\c\x1b[2J"`},
		{"a long name", "\\" + strings.Repeat("x", 100) + "\n", "line 1 ", `\` + strings.Repeat("x", 40) + "…"},
		{"CREATE DATABASE", "SELECT 1;\n\nCREATE DATABASE spywatcher WITH TEMPLATE = template0;\n", "line 3 ", "CREATE DATABASE"},
		{"DROP DATABASE", "drop database if exists spywatcher;", "line 1 ", "DROP DATABASE"},
		{"ALTER DATABASE", "ALTER /* x */\nDATABASE spywatcher OWNER TO x;", "line 1 ", "ALTER DATABASE"},
		{"ALTER SYSTEM", "ALTER SYSTEM SET archive_command = 'touch x';", "line 1 ", "ALTER SYSTEM"},
		{"NUL byte", "SELECT 1;\nSELECT '\x00';", "line 2 ", "NUL byte"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := split(t, c.sql)
			if !errors.Is(err, ErrPreflight) {
				t.Fatalf("err = %v, want ErrPreflight", err)
			}
			if !strings.Contains(err.Error(), c.line) || !strings.Contains(err.Error(), c.what) {
				t.Errorf("err = %v, want %q and %q in it", err, c.line, c.what)
			}
			if strings.ContainsAny(err.Error(), "\n\x1b") {
				t.Errorf("err is not one printable line: %q", err)
			}
			if err := scanSQLHead(bufio.NewReader(strings.NewReader(c.sql))); !errors.Is(err, ErrPreflight) {
				t.Errorf("head scan: err = %v, want ErrPreflight", err)
			}
		})
	}
}

// The head scan cannot ask the server about standard_conforming_strings: it refuses what
// either reading would take for a meta-command, until the dump sets it.
func TestSQLHeadReadsStringsBothWays(t *testing.T) {
	// On: one string running over the \! line. Off: a meta-command.
	hidden := "SELECT 'a\\'' ;\n\\! touch x\n';\n"
	if err := scanSQLHead(bufio.NewReader(strings.NewReader(hidden))); !errors.Is(err, ErrPreflight) {
		t.Errorf("hidden from the standard reading: err = %v", err)
	}
	// Off: one E-style string. On: a meta-command.
	if err := scanSQLHead(bufio.NewReader(strings.NewReader("SELECT 'a\\'; \\! touch x';\n"))); !errors.Is(err, ErrPreflight) {
		t.Errorf("hidden from the escape reading: err = %v", err)
	}
	// Once the dump says, only its reading counts.
	ok := "SET standard_conforming_strings = on;\n" + hidden
	if err := scanSQLHead(bufio.NewReader(strings.NewReader(ok))); err != nil {
		t.Errorf("after SET … on: err = %v", err)
	}
}

// The head scan judges only what it holds: COPY data, a statement or a meta-command
// line running past the head are left to the restore.
func TestSQLHeadStopsAtItsEnd(t *testing.T) {
	big := strings.Repeat("1\tsome data \\N\n", 200000)
	for _, sql := range []string{
		"COPY t FROM stdin;\n" + big + "\\.\n\\connect x\n",
		"SELECT '" + big + "';\n\\connect x\n",
		"-- x\n" + strings.Repeat("-- padding\n", (1<<20)/11) + "\\connect x\n",
	} {
		if err := scanSQLHead(bufio.NewReaderSize(strings.NewReader(sql), 2<<20)); err != nil {
			t.Errorf("err = %v", err)
		}
	}
}

func TestSQLScanStatementCap(t *testing.T) {
	s := newSQLScanner(&tinyReader{r: strings.NewReader("SELECT 1;\nSELECT '" + strings.Repeat("x", 5000) + "';")})
	s.max = 1000
	if _, err := s.next(); err != nil {
		t.Fatal(err)
	}
	_, err := s.next()
	if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "line 2 ") {
		t.Errorf("err = %v", err)
	}
}

func TestSQLScanReadError(t *testing.T) {
	broken := io.MultiReader(strings.NewReader("SELECT 1;\nCOPY t FROM stdin;\nab"), iotestErrReader{ErrCorrupt})
	s := newSQLScanner(broken)
	for i := 0; i < 2; i++ {
		if _, err := s.next(); err != nil {
			t.Fatal(err)
		}
	}
	_, err := io.ReadAll(s.copyData())
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("err = %v, want ErrCorrupt", err)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// Lines are counted through statements, comments, strings and COPY data alike.
func TestSQLScanLines(t *testing.T) {
	sql := "-- 1\n/* 2\n3 */ SELECT\n'4\n5';\nCOPY t FROM stdin;\n7\n8\n\\.\n$$10\n$$;\n\nSELECT 1; SELECT 2;\n"
	s := newSQLScanner(&tinyReader{r: strings.NewReader(sql)})
	var lines []int
	for {
		st, err := s.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, st.line)
		if st.copy {
			if st.dataLine != 7 {
				t.Errorf("COPY data starts on line %d, want 7", st.dataLine)
			}
			io.Copy(io.Discard, s.copyData())
		}
	}
	if got, want := lines, []int{2, 6, 10, 13, 13}; !equalInts(got, want) {
		t.Errorf("lines = %v, want %v", got, want)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The scanner never panics on hostile input, and what it makes of a dump does not
// depend on how the reads are cut.
func FuzzSQLScan(f *testing.F) {
	for _, c := range splitCases {
		f.Add(c.sql, true)
	}
	f.Add("SET standard_conforming_strings = off;\nSELECT 'a\\'' ;\n\\! x\n';", false)
	f.Add("COPY t FROM stdin;\r\n\\.\r\n\\restrict abc\n", true)
	f.Fuzz(func(t *testing.T, sql string, std bool) {
		scan := func(r io.Reader) string {
			s := newSQLScanner(r)
			s.stdStrings = std
			s.max = 1 << 10
			var out strings.Builder
			for {
				st, err := s.next()
				if err != nil {
					if err != io.EOF {
						fmt.Fprintf(&out, "error %v", err)
					}
					return out.String()
				}
				fmt.Fprintf(&out, "%d:%q|", st.line, st.text)
				if st.copy {
					data, err := io.ReadAll(&tinyReader{r: s.copyData()})
					fmt.Fprintf(&out, "data %q %v|", data, err)
				}
			}
		}
		whole, tiny := scan(strings.NewReader(sql)), scan(&tinyReader{r: strings.NewReader(sql)})
		if whole != tiny {
			t.Errorf("whole reads: %s\ntiny reads:  %s", whole, tiny)
		}
		_ = scanSQLHead(bufio.NewReader(strings.NewReader(sql)))
	})
}
