package recovery

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"drconsole/internal/pgtest"
)

// A backup's SQL runs as a role with no privileges: whatever it tries outside its
// scratch copy fails, the restore stops with one line, and the live database, the
// server's roles and the machine's files are as they were. Each payload is one a
// superuser-run restore would have carried out.
func TestHostileBackupStaysInItsCopy(t *testing.T) {
	f := newFixture(t)
	marker := filepath.Join(os.TempDir(), "drconsole-hostile-"+f.db)
	os.Remove(marker)
	t.Cleanup(func() { os.Remove(marker) })
	victim := `"` + f.db + `"`
	payloads := []struct{ name, sql string }{
		{"DO block altering live", `DO $$ BEGIN EXECUTE 'ALTER DATABASE ` + victim + ` RENAME TO stolen'; END $$;`},
		{"COPY TO PROGRAM", `COPY (SELECT 1) TO PROGRAM 'touch ` + marker + `';`},
		{"server file write", `SELECT lo_export(lo_from_bytea(0, 'x'), '` + marker + `');`},
		{"new superuser", `CREATE ROLE drconsole_evil SUPERUSER LOGIN;`},
		{"setting of the superuser", `ALTER ROLE postgres SET work_mem = '64kB';`},
		{"dblink into live", `CREATE EXTENSION IF NOT EXISTS dblink WITH SCHEMA public;
SELECT dblink_exec('dbname=` + f.db + ` host=127.0.0.1 port=` + strconv.Itoa(f.c.Port) + ` user=postgres', 'DELETE FROM "Session"');`},
		{"CHECK function run by every row", `CREATE FUNCTION public.evil(int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN EXECUTE 'CREATE ROLE drconsole_evil'; RETURN true; END $$;
CREATE TABLE public.t (x int CHECK (public.evil(x)));
COPY public.t (x) FROM stdin;
1
\.
`},
	}
	for _, pl := range payloads {
		t.Run(strings.ReplaceAll(pl.name, " ", "_"), func(t *testing.T) {
			name := "spywatcher_full_20240125_120000.sql"
			dump := "--\n-- PostgreSQL database dump\n--\nSET statement_timeout = 0;\nCREATE TABLE public.ok (id int);\n" + pl.sql + "\n"
			if err := os.WriteFile(f.path(name), []byte(dump), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			plan, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t)})
			if err != nil {
				t.Fatal(err)
			}
			_, err = plan.Restore(ctx, nil)
			if err == nil {
				t.Fatal("the hostile backup restored without an error")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("more than one line: %q", err)
			}
			f.assertUntouched(t, f.print)
			if _, serr := os.Stat(marker); serr == nil {
				t.Errorf("the backup wrote %s on the server's machine", marker)
			}
			if rows := f.c.Query(t, "postgres", `SELECT (SELECT count(*) FROM pg_roles WHERE rolname = 'drconsole_evil') + (SELECT count(*) FROM pg_db_role_setting WHERE setrole = 'postgres'::regrole AND setdatabase = 0)`); rows[0][0] != "0" {
				t.Error("the backup changed the server's roles")
			}
			if !contains(f.c.Databases(t), f.db) {
				t.Error("the live database was renamed")
			}
			// The superuser's password still works (the fixture connects with it).
			if _, err := FindLeftovers(ctx, f.conn(t)); err != nil {
				t.Fatalf("the superuser cannot log in any more: %v", err)
			}
		})
	}
}

// The same from a custom archive: a CHECK constraint's function that reaches out runs
// during the data load, as the sandbox, and fails.
func TestHostileArchiveStaysInItsCopy(t *testing.T) {
	f := newFixture(t)
	src := f.c.NewDB(t)
	// Harmless where it is made; in any other database it tries to make a role.
	f.c.Exec(t, src, `CREATE FUNCTION evil(int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN IF current_database() <> '`+src+`' THEN EXECUTE 'CREATE ROLE drconsole_evil'; END IF; RETURN true; END $$;
CREATE TABLE t (x int CHECK (evil(x))); INSERT INTO t VALUES (1);`)
	name := "spywatcher_full_20240125_120000.dump"
	run(t, f.c.Env(src), filepath.Join(f.c.BinDir, "pg_dump"), "-Fc", "-f", f.path(name), src)
	ctx := context.Background()
	plan, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), FromDB: src})
	if err != nil {
		t.Fatal(err)
	}
	_, err = plan.Restore(ctx, nil)
	if !errors.Is(err, ErrRestoreTool) || !strings.Contains(err.Error(), "--trust-backup") {
		t.Fatalf("restore of an archive whose CHECK function alters a role: %v", err)
	}
	if rows := f.c.Query(t, "postgres", `SELECT count(*) FROM pg_roles WHERE rolname = 'drconsole_evil'`); rows[0][0] != "0" {
		f.c.Exec(t, "postgres", `DROP ROLE drconsole_evil`)
		t.Fatal("the archive's CHECK function made a role on the server")
	}
	f.assertUntouched(t, f.print)
}

// A backup whose objects belong to several roles, with an extension only a superuser
// may install, one in a schema of its own and default privileges, restores as it was:
// every object to its owner, the extensions in place, the defaults set, and no trace of
// the loading role. Custom (with either engine) and plain alike.
func TestSandboxRestoresOwnersExtensionsAndDefaults(t *testing.T) {
	f := newFixture(t)
	app, reporting := f.db+"_app", f.db+"_reporting"
	f.c.Exec(t, "postgres", `CREATE ROLE "`+app+`"; CREATE ROLE "`+reporting+`"`)
	src := f.c.NewDB(t)
	t.Cleanup(func() {
		for _, db := range []string{src, src + "_custom", src + "_parallel", src + "_plain"} {
			f.c.Exec(t, "postgres", `DROP DATABASE IF EXISTS "`+db+`" WITH (FORCE)`)
		}
		f.c.Exec(t, "postgres", `DROP ROLE IF EXISTS "`+app+`", "`+reporting+`"`)
	})
	f.c.Exec(t, src, `CREATE EXTENSION pg_stat_statements; CREATE SCHEMA ext; CREATE EXTENSION hstore WITH SCHEMA ext;
CREATE SCHEMA billing AUTHORIZATION "`+app+`";
CREATE TABLE billing.invoice (id serial PRIMARY KEY, total numeric, attrs ext.hstore);
ALTER TABLE billing.invoice OWNER TO "`+app+`";
INSERT INTO billing.invoice (total, attrs) SELECT g, 'a=>1' FROM generate_series(1, 100) g;
CREATE TABLE public.report (id int); ALTER TABLE public.report OWNER TO "`+reporting+`";
CREATE VIEW public.totals AS SELECT sum(total) FROM billing.invoice; ALTER VIEW public.totals OWNER TO "`+reporting+`";
CREATE FUNCTION billing.double(a integer) RETURNS integer LANGUAGE sql AS 'SELECT a * 2'; ALTER FUNCTION billing.double(integer) OWNER TO "`+app+`";
CREATE TYPE billing.state AS ENUM ('open', 'paid'); ALTER TYPE billing.state OWNER TO "`+app+`";
ALTER DEFAULT PRIVILEGES FOR ROLE "`+app+`" IN SCHEMA billing GRANT SELECT ON TABLES TO "`+reporting+`";
GRANT SELECT ON billing.invoice TO "`+reporting+`";`)
	want := ownersOf(t, f.c, src)
	for _, format := range []string{"custom", "parallel", "plain"} {
		t.Run(format, func(t *testing.T) {
			name := "spywatcher_full_20240125_120000.dump"
			args := []string{"-Fc"}
			if format == "plain" {
				name, args = "spywatcher_full_20240125_120000.sql", []string{"-Fp"}
			}
			run(t, f.c.Env(src), filepath.Join(f.c.BinDir, "pg_dump"), append(args, "-f", f.path(name), src)...)
			target := src + "_" + format
			ctx := context.Background()
			engine := EnginePgRestore
			if format == "parallel" {
				engine = EngineParallel
			}
			plan, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), TestDB: target, FromDB: src, Engine: engine})
			if err != nil {
				t.Fatal(err)
			}
			r, err := plan.Restore(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if format != "plain" && r.Engine != engine {
				t.Errorf("restored by %s, not %s (%s)", r.Engine, engine, r.Fallback)
			}
			if got := ownersOf(t, f.c, target); got != want {
				t.Errorf("owners after the restore:\n got %s\nwant %s", got, want)
			}
			if rows := f.c.Query(t, target, `SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension`); rows[0][0] != "hstore,pg_stat_statements,plpgsql" {
				t.Errorf("extensions: %v", rows)
			}
			if rows := f.c.Query(t, target, `SELECT count(*) FROM billing.invoice WHERE attrs OPERATOR(ext.->) 'a' = '1'`); rows[0][0] != "100" {
				t.Errorf("rows: %v", rows)
			}
			if rows := f.c.Query(t, target, `SELECT count(*) FROM pg_default_acl`); rows[0][0] != "1" {
				t.Errorf("default privileges: %v", rows)
			}
			if rows := f.c.Query(t, target, `SELECT has_table_privilege('`+reporting+`', 'billing.invoice', 'SELECT')`); rows[0][0] != "t" {
				t.Errorf("grant lost: %v", rows)
			}
			// PUBLIC may connect, as to any database; no loading role is left anywhere.
			if rows := f.c.Query(t, "postgres", `SELECT has_database_privilege('public', '`+target+`', 'CONNECT')`); rows[0][0] != "t" {
				t.Errorf("PUBLIC cannot connect to the restored database")
			}
			if rows := f.c.Query(t, target, `SELECT count(*) FROM pg_roles WHERE rolname LIKE 'drconsole\_load\_%' AND shobj_description(oid, 'pg_authid') LIKE '%`+target+`%'`); rows[0][0] != "0" {
				t.Errorf("the loading role is still there")
			}
			for _, w := range r.Warnings {
				if strings.Contains(w, "owners not restored") {
					t.Errorf("warning: %s", w)
				}
			}
		})
	}
	f.assertUntouched(t, f.print)
}

// ownersOf lists a database's own objects with their owners, one line.
func ownersOf(t *testing.T, c *pgtest.Cluster, db string) string {
	t.Helper()
	rows := c.Query(t, db, `SELECT 'rel ' || c.oid::regclass || '=' || pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname IN ('public', 'billing') AND c.relkind IN ('r','v','S')
		UNION ALL SELECT 'schema ' || nspname || '=' || pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname IN ('billing', 'ext')
		UNION ALL SELECT 'func ' || p.oid::regprocedure || '=' || pg_get_userbyid(p.proowner) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'billing'
		UNION ALL SELECT 'type ' || t.oid::regtype || '=' || pg_get_userbyid(t.typowner) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'billing' AND t.typtype = 'e'`)
	var out []string
	for _, r := range rows {
		out = append(out, strings.ReplaceAll(r[0], db, "DB"))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// A server that lets no password login in for the loading role is found in pre-flight:
// one line says what to change or which flag to pass, and nothing is left.
func TestSandboxRefusedByTheServer(t *testing.T) {
	c := pgtest.Start(t)
	// Written by the server itself, so the file keeps its owner.
	c.Exec(t, "postgres", `COPY (SELECT unnest(ARRAY['local all all trust', 'host all postgres 127.0.0.1/32 scram-sha-256',
		'host all all 127.0.0.1/32 reject'])) TO '`+filepath.Join(c.DataDir, "pg_hba.conf")+`'`)
	c.Exec(t, "postgres", `SELECT pg_reload_conf()`)
	f := &fixture{c: c, db: c.NewDB(t), dir: t.TempDir()}
	c.Exec(t, f.db, appSchema)
	f.print = fingerprint(t, c, f.db)
	name := f.pgDump(t, "spywatcher_full_20240125_120000.dump", "-Fc")
	_, err := Prepare(context.Background(), f.source(t, name), Options{Conn: f.conn(t)})
	f.assertBad(t, err, ErrSandbox)
	for _, want := range []string{"pg_hba.conf", "--trust-backup", "rejects connection"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say %q: %v", want, err)
		}
	}
	// --trust-backup loads it as the superuser, and says so.
	plan, err := Prepare(context.Background(), f.source(t, name), Options{Conn: f.conn(t), TrustBackup: true, TestDB: f.db + "_trusted"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(plan.Warnings, "\n"), "--trust-backup") {
		t.Errorf("no warning for --trust-backup: %v", plan.Warnings)
	}
	if _, err := plan.Restore(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if got := fingerprint(t, c, f.db+"_trusted"); got != f.print {
		t.Errorf("trusted restore: %s", got)
	}
}

// A restore killed before it could drop its loading role leaves the role marked; the
// next run drops it when it owns nothing, and drops it with its database otherwise.
func TestLeftLoadingRolesAreDropped(t *testing.T) {
	f := newFixture(t)
	name := f.backupJob(t, "20240125_120000")
	ctx := context.Background()
	plan, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: f.keys(t)})
	if err != nil {
		t.Fatal(err)
	}
	// Killed in pre-flight: the role is there, its lock gone with the session.
	role := plan.sandbox.role
	plan.lock.release()
	did, err := Repair(ctx, f.conn(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(did, "\n"), role) {
		t.Errorf("repair said %v", did)
	}
	// Killed after CREATE DATABASE, before the database's own mark: its owner's mark says
	// whose it is, and dropping it drops the role too.
	plan, err = Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: f.keys(t)})
	if err != nil {
		t.Fatal(err)
	}
	f.c.Exec(t, "postgres", `CREATE DATABASE "`+plan.Scratch+`" OWNER `+plan.sandbox.role)
	plan.lock.release()
	l := findLeftover(mustLeftovers(t, f), plan.Scratch)
	if l == nil || !l.Marked || l.Role != RoleScratch || l.Target != f.db || l.LoadRole != plan.sandbox.role {
		t.Fatalf("scratch owned by a loading role: %+v", l)
	}
	if err := DropLeftover(ctx, f.conn(t), plan.Scratch); err != nil {
		t.Fatal(err)
	}
	f.assertUntouched(t, f.print)
}
