package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"drconsole/checklists"
	"drconsole/internal/gpgtest"
	"drconsole/internal/pgtest"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	removeBuilds()
	for _, d := range faultDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

const cliSchema = `
CREATE TYPE "Role" AS ENUM ('USER', 'ADMIN');
CREATE TABLE "User" (id serial PRIMARY KEY, username text NOT NULL, role "Role" NOT NULL DEFAULT 'USER', bio text, avatar bytea, tags text[]);
CREATE TABLE "Guild" (id serial PRIMARY KEY, name text, "ownerId" int REFERENCES "User"(id));
CREATE TABLE "ApiKey" (id serial PRIMARY KEY, "userId" int REFERENCES "User"(id), key bytea);
CREATE TABLE "Session" (id text PRIMARY KEY);
INSERT INTO "User" (username, role, bio, avatar, tags) SELECT 'u' || g, CASE WHEN g % 10 = 0 THEN 'ADMIN'::"Role" ELSE 'USER' END,
  E'tab\there\nnewline ' || g, decode(md5(g::text), 'hex'), ARRAY['x', E'"q"'] FROM generate_series(1, 200) g;
INSERT INTO "Guild" (name, "ownerId") SELECT 'g' || g, g FROM generate_series(1, 50) g;
INSERT INTO "ApiKey" ("userId", key) SELECT g, '\x00ff' FROM generate_series(1, 80) g;
`

func cliFingerprint(t *testing.T, c *pgtest.Cluster, db string) string {
	t.Helper()
	var parts []string
	for _, table := range []string{"User", "Guild", "ApiKey"} {
		rows := c.Query(t, db, `SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM "`+table+`" x`)
		parts = append(parts, rows[0][0])
	}
	return strings.Join(parts, " ")
}

func TestCLIBackupRestoreVerifyCheck(t *testing.T) {
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	c.Exec(t, db, cliSchema)
	want := cliFingerprint(t, c, db)
	key := gpgtest.NewKey(t, "Ops", "")
	dir := t.TempDir()
	state := t.TempDir()
	env := map[string]string{"BACKUP_DIR": dir, "XDG_STATE_HOME": state}

	// drconsole backup writes the backup job's format...
	out, errb, code := runCLI(t, env, "backup", "--db-url", c.URL(db), "--gpg-recipient", key.PublicFile, "--json")
	if code != 0 {
		t.Fatalf("backup: exit %d: %s", code, errb)
	}
	var stored struct{ Stored []struct{ Name string } }
	if err := json.Unmarshal([]byte(out), &stored); err != nil || len(stored.Stored) != 1 || !strings.HasSuffix(stored.Stored[0].Name, ".dump.gz.gpg") {
		t.Fatalf("backup --json: %v %s", err, out)
	}
	name := stored.Stored[0].Name

	// ...which the real gpg, gunzip and pg_restore read.
	plain := filepath.Join(dir, "plain.dump")
	key.Decrypt(t, filepath.Join(dir, name), plain+".gz")
	if out, err := exec.Command("gunzip", plain+".gz").CombinedOutput(); err != nil {
		t.Fatalf("gunzip: %v %s", err, out)
	}
	copyDB := c.NewDB(t)
	cmd := exec.Command(filepath.Join(c.BinDir, "pg_restore"), "--dbname", copyDB, plain)
	cmd.Env = append(os.Environ(), c.Env(copyDB)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_restore: %v %s", err, out)
	}
	os.Remove(plain)
	if got := cliFingerprint(t, c, copyDB); got != want {
		t.Fatalf("gpg|gunzip|pg_restore of drconsole's backup differs:\n got %s\nwant %s", got, want)
	}

	// backups --json lists it with the fields scripts rely on.
	out, errb, code = runCLI(t, env, "backups", "--json")
	if code != 0 {
		t.Fatalf("backups: exit %d: %s", code, errb)
	}
	var list struct {
		Backups []struct {
			Name, Location, Time, Kind, Format, Compression string
			Size                                            int64
			Encrypted                                       bool
		}
		Locations []struct {
			Name      string
			Reachable bool
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Backups) != 1 || list.Backups[0].Name != name || !list.Backups[0].Encrypted || list.Backups[0].Format != "custom" ||
		list.Backups[0].Compression != "gzip" || list.Backups[0].Kind != "full" || list.Backups[0].Size == 0 || list.Backups[0].Time == "" {
		t.Errorf("backups --json: %s", out)
	}
	if len(list.Locations) != 1 || !list.Locations[0].Reachable {
		t.Errorf("locations: %+v", list.Locations)
	}

	// verify reads it whole.
	out, errb, code = runCLI(t, env, "verify", "--json", "--gpg-key", key.SecretFile, name)
	if code != 0 || !strings.Contains(out, `"complete": true`) || !strings.Contains(out, `"public.User"`) {
		t.Errorf("verify: exit %d: %s %s", code, out, errb)
	}
	// Each table with its rows as the archive holds them: exactly name and rows, for scripts.
	var verified struct {
		Archive struct{ Tables []map[string]any }
	}
	if err := json.Unmarshal([]byte(out), &verified); err != nil {
		t.Fatal(err)
	}
	tables, _ := json.Marshal(verified.Archive.Tables)
	if want := `[{"name":"public.ApiKey","rows":80},{"name":"public.Guild","rows":50},{"name":"public.Session","rows":0},{"name":"public.User","rows":200}]`; string(tables) != want {
		t.Errorf("verify --json tables:\n got %s\nwant %s", tables, want)
	}
	// And for people: every table, its count aligned on the right.
	out, errb, code = runCLI(t, env, "verify", "--gpg-key", key.SecretFile, name)
	wantTables := "tables    4 with data, 330 rows:\n" +
		"          public.ApiKey    80\n" +
		"          public.Guild     50\n" +
		"          public.Session    0\n" +
		"          public.User     200\n"
	if code != 0 || !strings.Contains(out, wantTables) {
		t.Errorf("verify: exit %d, want\n%s\nin:\n%s%s", code, wantTables, out, errb)
	}

	// The incident: damaged live data; restore --yes brings it back and keeps the old copy.
	c.Exec(t, db, `DELETE FROM "ApiKey"; UPDATE "User" SET bio = 'lost'`)
	_, errb, code = runCLI(t, env, "restore", "--yes", "--gpg-key", key.SecretFile, "--db-url", c.URL(db), "latest")
	if code != 0 {
		t.Fatalf("restore: exit %d: %s", code, errb)
	}
	if got := cliFingerprint(t, c, db); got != want {
		t.Errorf("restored database differs:\n got %s\nwant %s", got, want)
	}
	if !strings.Contains(errb, "kept as "+db+"_pre_restore_") {
		t.Errorf("restore output does not name the kept database:\n%s", errb)
	}
	// Every table's rows, all matching: the proof is shown, not only a verdict.
	wantRows := "rows of every table:\n" +
		"            table            archive  restored      live\n" +
		"  ok        public.ApiKey         80        80         0\n" +
		"  ok        public.Guild          50        50        50\n" +
		"  ok        public.Session         0         0         0\n" +
		"  ok        public.User          200       200       200\n" +
		"  4 tables, every row as in the archive\n"
	if !strings.Contains(errb, wantRows) {
		t.Errorf("restore output lacks\n%s\nin:\n%s", wantRows, errb)
	}
	// The CLI restore is on record in an incident journal, without the password.
	journals, _ := filepath.Glob(filepath.Join(state, "drconsole", "incidents", "*"))
	if len(journals) != 1 {
		t.Fatalf("journals: %v", journals)
	}
	jdata, _ := os.ReadFile(journals[0])
	if !strings.Contains(string(jdata), `"type":"swap_finished","step":4,"result":"ok"`) || !strings.Contains(string(jdata), `"result":"ok","detail":"`+db+` is the restored copy`) || !strings.Contains(string(jdata), name) {
		t.Errorf("journal lacks the restore:\n%s", jdata)
	}
	if strings.Contains(string(jdata), c.Password) {
		t.Errorf("journal holds the database password")
	}

	// check --json against the live database.
	out, errb, code = runCLI(t, env, "check", "--json", "--db-url", c.URL(db))
	if code != 0 || !strings.Contains(out, `"actual": "200"`) || !strings.Contains(out, `"rows_restore": "`+name+`"`) {
		t.Errorf("check: exit %d: %s %s", code, out, errb)
	}
	// And for people: the rows the incident's last restore counted, table by table.
	out, errb, code = runCLI(t, env, "check", "--db-url", c.URL(db))
	if code != 0 || !strings.Contains(out, "the last restore of "+db+" in this incident ("+name) || !strings.Contains(out, wantRows) {
		t.Errorf("check: exit %d, want the last restore's rows:\n%s%s", code, out, errb)
	}
}

func TestCLIExitCodesForBadInput(t *testing.T) {
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	c.Exec(t, db, cliSchema)
	want := cliFingerprint(t, c, db)
	key := gpgtest.NewKey(t, "Ops", "")
	other := gpgtest.NewKey(t, "Other", "")
	dir := t.TempDir()
	env := map[string]string{"BACKUP_DIR": dir, "XDG_STATE_HOME": t.TempDir()}
	if _, errb, code := runCLI(t, env, "backup", "--db-url", c.URL(db), "--gpg-recipient", key.PublicFile); code != 0 {
		t.Fatalf("backup: %s", errb)
	}
	entries, _ := os.ReadDir(dir)
	name := entries[0].Name()
	data, _ := os.ReadFile(filepath.Join(dir, name))
	os.WriteFile(filepath.Join(dir, "spywatcher_full_20200101_000000.dump.gz.gpg"), data[:len(data)/2], 0o600)
	// A backup of another database, named like one of this one's.
	otherDB := c.NewDB(t)
	c.Exec(t, otherDB, `CREATE TABLE notes (id int)`)
	dump := exec.Command(filepath.Join(c.BinDir, "pg_dump"), "-Fc", "-f", filepath.Join(dir, "spywatcher_full_20210101_000000.dump"), otherDB)
	dump.Env = append(os.Environ(), c.Env(otherDB)...)
	if out, err := dump.CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v %s", err, out)
	}
	dbEnv := func(name string) map[string]string {
		e := map[string]string{"DB_HOST": c.Host, "DB_PORT": fmt.Sprint(c.Port), "DB_USER": c.User, "DB_PASSWORD": c.Password, "DB_NAME": name, "PGSSLMODE": "disable"}
		for k, v := range env {
			e[k] = v
		}
		return e
	}

	cases := []struct {
		name string
		args []string
		code int
		env  map[string]string
		says string
	}{
		{"target-db as connection settings", []string{"restore", "--gpg-key", key.SecretFile, "--db-url", c.URL(db), "--target-db", "dbname=" + db, name}, exitUsage, nil, "looks like connection settings"},
		{"empty target-db", []string{"restore", "--yes", "--gpg-key", key.SecretFile, "--db-url", c.URL(db), "--target-db", "", name}, exitUsage, nil, "empty"},
		{"target-db of the server's own", []string{"restore", "--gpg-key", key.SecretFile, "--db-url", c.URL(db), "--target-db", "postgres", name}, exitUsage, nil, "server's own"},
		{"DB_NAME as connection settings", []string{"restore", "--yes", "--gpg-key", key.SecretFile, name}, exitPreflight, dbEnv("dbname=" + db), "looks like connection settings"},
		{"backup of another database", []string{"restore", "--yes", "spywatcher_full_20210101_000000.dump"}, exitPreflight, dbEnv(db), "--from-db " + otherDB},
		{"unsigned backup with a signer required", []string{"restore", "--yes", "--gpg-key", key.SecretFile, "--signer-key", other.PublicFile, name}, exitSignature, dbEnv(db), "not signed"},
		{"wrong key", []string{"restore", "--yes", "--gpg-key", other.SecretFile, "--db-url", c.URL(db), name}, exitKey, nil, "key"},
		{"truncated", []string{"restore", "--yes", "--gpg-key", key.SecretFile, "--db-url", c.URL(db), "spywatcher_full_20200101_000000.dump.gz.gpg"}, exitCorrupt, nil, "truncated"},
		{"server down", []string{"restore", "--yes", "--gpg-key", key.SecretFile, "--db-url", "postgres://postgres@127.0.0.1:1/" + db + "?sslmode=disable", name}, exitDatabase, nil, "cannot connect"},
		{"typo'd database for check", []string{"check", "--db-url", c.URL(db + "_typo")}, exitDatabase, nil, "does not exist"},
		{"no such backup", []string{"restore", "--yes", "--db-url", c.URL(db), "spywatcher_full_19990101_000000.dump.gz"}, exitUnreachable, nil, "no such backup"},
		{"unknown flag", []string{"restore", "--frobnicate", name}, exitUsage, nil, "frobnicate"},
		{"unknown engine", []string{"restore", "--yes", "--engine", "fast", "--db-url", c.URL(db), name}, exitUsage, nil, "auto, pg_restore or parallel"},
		{"no connections", []string{"verify", "--restore-test", "--jobs", "0", "--db-url", c.URL(db), name}, exitUsage, nil, "from 1 to 64"},
		{"no terminal to confirm on", []string{"restore", "--gpg-key", key.SecretFile, "--db-url", c.URL(db), name}, exitUsage, nil, "--yes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := env
			if tc.env != nil {
				e = tc.env
			}
			_, errb, code := runCLI(t, e, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, errb)
			}
			lines := strings.Split(strings.TrimSpace(errb), "\n")
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, "drconsole ") || !strings.Contains(last, tc.says) {
				t.Errorf("last stderr line is not drconsole's one-line error saying %q: %q", tc.says, last)
			}
			if got := cliFingerprint(t, c, db); got != want {
				t.Errorf("live database changed")
			}
			for _, d := range c.Databases(t) {
				if strings.HasPrefix(d, db+"_restore_") {
					t.Errorf("scratch database left: %s", d)
				}
			}
		})
	}
}

func TestCLITestRestoreAndVerifyRestoreTest(t *testing.T) {
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	c.Exec(t, db, cliSchema)
	want := cliFingerprint(t, c, db)
	dir := t.TempDir()
	env := map[string]string{"BACKUP_DIR": dir, "XDG_STATE_HOME": t.TempDir()}
	// An unencrypted plain SQL backup, named as the old docs name them.
	sql := filepath.Join(dir, "spywatcher_full_20240125_120000.sql")
	cmd := exec.Command(filepath.Join(c.BinDir, "pg_dump"), "--no-owner", "-f", sql, db)
	cmd.Env = append(os.Environ(), c.Env(db)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v %s", err, out)
	}
	if out, err := exec.Command("gzip", sql).CombinedOutput(); err != nil {
		t.Fatalf("gzip: %v %s", err, out)
	}
	name := filepath.Base(sql) + ".gz"

	// The monthly test: restore into a new database and stop.
	testDB := db + "_monthly"
	_, errb, code := runCLI(t, env, "restore", "--db-url", c.URL(db), "--target-db", testDB, name)
	if code != 0 {
		t.Fatalf("restore --target-db: exit %d: %s", code, errb)
	}
	if got := cliFingerprint(t, c, testDB); got != want {
		t.Errorf("test database differs:\n got %s\nwant %s", got, want)
	}
	if got := cliFingerprint(t, c, db); got != want {
		t.Errorf("live database changed by a test restore")
	}
	// Restoring into it again is refused: a test restore needs a new database.
	if _, _, code := runCLI(t, env, "restore", "--db-url", c.URL(db), "--target-db", testDB, name); code != exitPreflight {
		t.Errorf("second test restore into %s: exit %d, want %d", testDB, code, exitPreflight)
	}

	// verify --restore-test restores into a throwaway database and drops it.
	before := c.Databases(t)
	out, errb, code := runCLI(t, env, "verify", "--restore-test", "--db-url", c.URL(db), "--json", name)
	if code != 0 || !strings.Contains(out, `"complete": true`) || !strings.Contains(out, `"restore_test"`) {
		t.Fatalf("verify --restore-test: exit %d: %s %s", code, out, errb)
	}
	if after := c.Databases(t); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("verify --restore-test left databases behind: before %v, after %v", before, after)
	}

	// The engine is the operator's to choose: a custom archive over two connections.
	dump := filepath.Join(dir, "spywatcher_full_20240126_120000.dump")
	cmd = exec.Command(filepath.Join(c.BinDir, "pg_dump"), "-Fc", "-f", dump, db)
	cmd.Env = append(os.Environ(), c.Env(db)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v %s", err, out)
	}
	parDB := db + "_parallel"
	out, errb, code = runCLI(t, env, "restore", "--db-url", c.URL(db), "--target-db", parDB, "--engine", "parallel", "--jobs", "2", filepath.Base(dump))
	if code != 0 {
		t.Fatalf("restore --engine parallel: exit %d: %s", code, errb)
	}
	if all := out + errb; !strings.Contains(all, "restore engine: parallel over 2 connections (--engine)") || !strings.Contains(all, "PASS  rows of every table") {
		t.Errorf("restore --engine parallel does not say so, or did not count the rows:\n%s", all)
	}
	if got := cliFingerprint(t, c, parDB); got != want {
		t.Errorf("database restored by the parallel engine differs:\n got %s\nwant %s", got, want)
	}
}

// Names from a backup location and secrets from the command line are printed safely: a
// file name cannot send escape sequences to the operator's terminal, and no error echoes
// a password, even from a URL that does not parse.
func TestCLINamesAndSecretsPrintedSafely(t *testing.T) {
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	dir := t.TempDir()
	for _, name := range []string{"spywatcher_full_20240101_000000.dump\x1b]0;pwned\x07", "spywatcher_full_20240102_000000.dump\nfake line", "evil\x1b[2J.dump"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, errb, code := runCLI(t, map[string]string{"BACKUP_DIR": dir}, "backups")
	if code != 0 {
		t.Fatalf("backups: exit %d: %s", code, errb)
	}
	if strings.ContainsAny(out, "\x1b\x07") || strings.Contains(out, "\nfake line") {
		t.Errorf("backups printed a name's control characters raw:\n%q", out)
	}
	if !strings.Contains(out, `\x1b[2J`) {
		t.Errorf("the escaped name is not shown:\n%s", out)
	}
	for _, url := range []string{"postgres://u:s3cr%zzet@host/db", "postgres://u:p@ss:w0rd@host:99999/db", "host=x password='hunter2 dbname=y"} {
		_, errb, code := runCLI(t, nil, "check", "--db-url", url)
		if code != exitUsage || strings.Contains(errb, "s3cr") || strings.Contains(errb, "ss:w0rd") || strings.Contains(errb, "w0rd") || strings.Contains(errb, "hunter2") {
			t.Errorf("check --db-url %q: exit %d, stderr %q", url, code, errb)
		}
	}
	_, errb, _ = runCLI(t, nil, "check", "--db-url", c.URL(db))
	if !strings.Contains(errb, "warning: the password in --db-url is visible") || strings.Contains(errb, c.Password) {
		t.Errorf("a password on the command line gets no warning, or is echoed:\n%s", errb)
	}
}

// A plain SQL backup is run by drconsole, not psql: none of psql's meta-commands in it
// runs, whichever trick carries it, and nothing outside the scratch database changes.
func TestCLIPlainBackupCannotActOutsideItsScratchDatabase(t *testing.T) {
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	c.Exec(t, db, cliSchema)
	want := cliFingerprint(t, c, db)
	dir, marker := t.TempDir(), filepath.Join(t.TempDir(), "pwned")
	sql := filepath.Join(dir, "base.sql")
	dump := exec.Command(filepath.Join(c.BinDir, "pg_dump"), "-Fp", "-f", sql, db)
	dump.Env = append(os.Environ(), c.Env(db)...)
	if out, err := dump.CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v %s", err, out)
	}
	base, err := os.ReadFile(sql)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(sql)
	for i, evil := range []string{
		"\\! touch " + marker + "\n",
		"SELECT 1; \\connect " + db + "\nDELETE FROM \"ApiKey\";\n",
		"\\c\t" + db + "\nDELETE FROM \"ApiKey\";\n",
		"SELECT 1 \\g |touch " + marker + "\n",
		"\\o |touch " + marker + "\nSELECT 1;\n",
		"COPY (SELECT 1) TO STDOUT; SELECT 1 FROM stdin;\n\\! touch " + marker + "\n",
		// With standard_conforming_strings off this is one string, as the server (and
		// psql) read it: no meta-command, so the restore goes through and runs nothing.
		"SET standard_conforming_strings = off;\nSELECT 'a\\' \\! touch " + marker + " ';\n",
		// SQL itself, run by the server: the backup loads as a role without privileges,
		// so each fails and says what would let it run.
		"COPY (SELECT 1) TO PROGRAM 'touch " + marker + "';\n",
		"DO $$ BEGIN EXECUTE 'ALTER DATABASE \"" + db + "\" RENAME TO stolen'; END $$;\n",
		"CREATE EXTENSION IF NOT EXISTS dblink WITH SCHEMA public;\nSELECT public.dblink_exec('dbname=" + db + " host=127.0.0.1 port=" + strconv.Itoa(c.Port) + " user=postgres', 'DELETE FROM \"ApiKey\"');\n",
	} {
		name := fmt.Sprintf("spywatcher_full_2024010%d_000000.sql.gz", i+1)
		var body bytes.Buffer
		zw := gzip.NewWriter(&body)
		// Deep inside the dump, past what pre-flight reads, and at its very start.
		zw.Write(base)
		zw.Write([]byte(evil))
		zw.Close()
		if err := os.WriteFile(filepath.Join(dir, name), body.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		_, errb, code := runCLI(t, map[string]string{"BACKUP_DIR": dir, "XDG_STATE_HOME": t.TempDir()}, "restore", "--yes", "--db-url", c.URL(db), name)
		oneString := strings.HasPrefix(evil, "SET standard_conforming_strings = off")
		sqlPayload := !strings.Contains(evil, "\\")
		switch {
		case oneString && code != 0, sqlPayload && !oneString && (code != exitChecks || !strings.Contains(errb, "--trust-backup")),
			!sqlPayload && !oneString && code != exitPreflight:
			t.Errorf("%q: exit %d:\n%s", evil, code, errb)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("%q ran a shell command on the machine running drconsole", evil)
		}
		if got := cliFingerprint(t, c, db); got != want {
			t.Fatalf("%q changed the live database", evil)
		}
		for _, d := range c.Databases(t) {
			if strings.HasPrefix(d, db+"_restore_") {
				t.Errorf("%q left scratch database %s", evil, d)
			}
		}
		t.Logf("%q: exit %d: %s", evil, code, lastLine(errb))
	}
}

// Another application: its backups are named after its database, and latest finds its
// newest, not a newer one of another application in the same place.
func TestCLIAnotherApplication(t *testing.T) {
	c := pgtest.Shared(t)
	orders := c.NewDB(t)
	c.Exec(t, orders, `CREATE TABLE line_items (id int PRIMARY KEY, sku text); INSERT INTO line_items SELECT g, 'sku' || g FROM generate_series(1, 100) g`)
	dir := t.TempDir()
	env := map[string]string{"BACKUP_DIR": dir, "XDG_STATE_HOME": t.TempDir(), "DB_HOST": c.Host, "DB_PORT": fmt.Sprint(c.Port),
		"DB_USER": c.User, "DB_PASSWORD": c.Password, "DB_NAME": orders, "PGSSLMODE": "disable"}
	out, errb, code := runCLI(t, env, "backup", "--json")
	if code != 0 || !strings.Contains(out, `"name": "`+orders+`_full_`) {
		t.Fatalf("backup of %s: exit %d: %s %s", orders, code, out, errb)
	}
	// A newer backup of another application sits beside it.
	if err := os.WriteFile(filepath.Join(dir, "spywatcher_full_20991231_000000.dump"), []byte("PGDMP not really"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Exec(t, orders, `DELETE FROM line_items WHERE id > 10`)
	_, errb, code = runCLI(t, env, "restore", "--yes", "latest")
	if code != 0 {
		t.Fatalf("restore latest: exit %d:\n%s", code, errb)
	}
	if !strings.Contains(errb, "plan: restore "+orders+"_full_") {
		t.Errorf("latest chose another application's backup:\n%s", errb)
	}
	if n := c.Query(t, orders, `SELECT count(*) FROM line_items`)[0][0]; n != "100" {
		t.Errorf("rows after the restore: %s", n)
	}
	// BACKUP_PREFIX names the application when its backups carry another name.
	env["BACKUP_PREFIX"] = "spywatcher"
	if _, errb, code := runCLI(t, env, "restore", "--yes", "latest"); code == 0 || !strings.Contains(errb, "spywatcher_full_20991231_000000.dump") {
		t.Errorf("with BACKUP_PREFIX=spywatcher: exit %d:\n%s", code, errb)
	}
}

// backups with every location unreachable is a failure (exit 8), not an empty list.
func TestCLIBackupsUnreachable(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-dir")
	for _, args := range [][]string{{"backups"}, {"backups", "--json"}} {
		out, errb, code := runCLI(t, map[string]string{"BACKUP_DIR": missing}, args...)
		if code != exitUnreachable || !strings.Contains(lastLine(errb), "no location could be read") {
			t.Errorf("%v: exit %d\n%s%s", args, code, out, errb)
		}
	}
}

// A command-line restore joins the open incident only when it is the obvious one; a stale
// one, or one of another scenario than asked, needs --incident or --new-incident.
func TestCLIRestoreDoesNotJoinAStaleIncident(t *testing.T) {
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	c.Exec(t, db, cliSchema)
	dir, state := t.TempDir(), t.TempDir()
	env := map[string]string{"BACKUP_DIR": dir, "XDG_STATE_HOME": state, "BACKUP_PREFIX": "spywatcher"}
	if _, errb, code := runCLI(t, env, "backup", "--db-url", c.URL(db)); code != 0 {
		t.Fatalf("backup: %s", errb)
	}
	sc, _ := checklists.Default().Scenario("ransomware")
	old := time.Now().Add(-13 * time.Hour)
	j, err := checklists.StartIncident(checklists.StartOptions{StateDir: filepath.Join(state, "drconsole"), Scenario: sc, Operator: "bob", Now: func() time.Time { return old }})
	if err != nil {
		t.Fatal(err)
	}
	id := j.ID()
	j.Close()
	restore := func(extra ...string) (string, int) {
		args := append([]string{"restore", "--db-url", c.URL(db), "--target-db", fmt.Sprintf("%s_t%d", db, len(extra))}, extra...)
		_, errb, code := runCLI(t, env, append(args, "latest")...)
		return errb, code
	}
	if errb, code := restore(); code != exitUsage || !strings.Contains(errb, "--incident "+id) || !strings.Contains(errb, "--new-incident") {
		t.Errorf("a stale open incident was joined silently: exit %d\n%s", code, errb)
	}
	if errb, code := restore("--new-incident"); code != 0 || !strings.Contains(errb, "started incident") {
		t.Errorf("--new-incident: exit %d\n%s", code, errb)
	}
	if errb, code := restore("--incident", id, "--scenario", "ransomware"); code != 0 || !strings.Contains(errb, "recording in incident "+id) {
		t.Errorf("--incident: exit %d\n%s", code, errb)
	}
	inc, _, err := checklists.ReadJournal(filepath.Join(state, "drconsole", "incidents", id+".jsonl"))
	if err != nil || len(inc.Restores) != 1 {
		t.Errorf("the named incident's restores: %v %+v", err, inc)
	}
}
