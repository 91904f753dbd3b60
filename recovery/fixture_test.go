package recovery

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"drconsole/checklists"
	"drconsole/internal/gpgtest"
	"drconsole/internal/pgtest"
	"drconsole/storage"
)

func TestMain(m *testing.M) {
	ProgressInterval = 10e6 // 10 ms: tests see progress quickly
	os.Exit(pgtest.Main(m))
}

// appSchema is shaped like the application's: quoted PascalCase tables, an enum,
// foreign keys, bytea, arrays, and text with tabs and newlines.
const appSchema = `
CREATE TYPE "Role" AS ENUM ('USER', 'ADMIN', 'MODERATOR');
CREATE TABLE "User" (
  id serial PRIMARY KEY,
  "discordId" text UNIQUE NOT NULL,
  username text NOT NULL,
  role "Role" NOT NULL DEFAULT 'USER',
  bio text,
  avatar bytea,
  tags text[],
  "createdAt" timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00'
);
CREATE TABLE "Guild" (
  id serial PRIMARY KEY,
  name text NOT NULL,
  "ownerId" int NOT NULL REFERENCES "User"(id),
  settings jsonb
);
CREATE TABLE "ApiKey" (
  id serial PRIMARY KEY,
  "userId" int NOT NULL REFERENCES "User"(id) ON DELETE CASCADE,
  key bytea NOT NULL,
  scopes text[] NOT NULL DEFAULT '{}'
);
CREATE TABLE "Session" (
  id text PRIMARY KEY,
  "userId" int REFERENCES "User"(id),
  data text
);
INSERT INTO "User" ("discordId", username, role, bio, avatar, tags)
SELECT 'd' || g, 'user ' || g, CASE WHEN g % 50 = 0 THEN 'ADMIN'::"Role" ELSE 'USER' END,
       E'line one\tcol\nline "two" \\ back' || g, decode(md5(g::text), 'hex'), ARRAY['a,b', E'q"uote', NULL, 'x' || g]
FROM generate_series(1, 500) g;
INSERT INTO "Guild" (name, "ownerId", settings) SELECT 'guild ' || g, 1 + g % 500, jsonb_build_object('n', g) FROM generate_series(1, 120) g;
INSERT INTO "ApiKey" ("userId", key, scopes) SELECT 1 + g % 500, decode(repeat('00ff', 8), 'hex'), ARRAY['read','write'] FROM generate_series(1, 300) g;
INSERT INTO "Session" VALUES ('s1', 1, E'tab\there');
`

// shippedChecks are the shipped runbook's application checks, as the command line and the
// console pass them.
func shippedChecks() []Check {
	var out []Check
	for _, d := range checklists.Default().Checks {
		out = append(out, Check{Name: d.Name, SQL: d.SQL, Table: d.Table, Rows: d.Rows, Compare: d.Compare, Database: d.Database, Expect: d.Expect, Warning: d.Warning})
	}
	return out
}

// fingerprint is a digest of every row of the app's tables: equal fingerprints mean
// every row is identical.
func fingerprint(t testing.TB, c *pgtest.Cluster, db string) string {
	t.Helper()
	var parts []string
	for _, table := range []string{"User", "Guild", "ApiKey", "Session"} {
		rows := c.Query(t, db, `SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM "`+table+`" x`)
		parts = append(parts, table+"="+rows[0][0])
	}
	return strings.Join(parts, " ")
}

// fixture is a live application database and a backup of it made exactly as the
// backup job makes it: pg_dump -Fc, gzip, gpg --encrypt --recipient.
type fixture struct {
	c     *pgtest.Cluster
	db    string // the live database
	dir   string // a local backup directory
	key   *gpgtest.Key
	print string // fingerprint of the live database when the backup was taken
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c := pgtest.Shared(t)
	f := &fixture{c: c, db: c.NewDB(t), dir: t.TempDir()}
	c.Exec(t, f.db, appSchema)
	f.print = fingerprint(t, c, f.db)
	t.Cleanup(func() {
		for _, d := range c.Databases(t) {
			if strings.HasPrefix(d, f.db+"_") {
				c.Exec(t, "postgres", "DROP DATABASE "+pgx.Identifier{d}.Sanitize()+" WITH (FORCE)")
			}
		}
	})
	return f
}

func (f *fixture) key_(t *testing.T) *gpgtest.Key {
	if f.key == nil {
		f.key = gpgtest.NewKey(t, "Backup Job", "")
	}
	return f.key
}

// run runs a command and fails the test on error.
func run(t testing.TB, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func sh(t testing.TB, env []string, script string) {
	t.Helper()
	run(t, env, "/bin/sh", "-c", script)
}

// dump makes spywatcher_full_<stamp>.dump.gz.gpg the way the backup job does and
// returns its name.
func (f *fixture) backupJob(t *testing.T, stamp string) string {
	t.Helper()
	key := f.key_(t)
	raw := filepath.Join(f.dir, "raw.dump")
	run(t, f.c.Env(f.db), filepath.Join(f.c.BinDir, "pg_dump"), "-Fc", "-b", "-f", raw, f.db)
	run(t, nil, "gzip", raw)
	name := "spywatcher_full_" + stamp + ".dump.gz.gpg"
	key.Encrypt(t, raw+".gz", filepath.Join(f.dir, name))
	os.Remove(raw + ".gz")
	return name
}

func (f *fixture) conn(t testing.TB) *Conn {
	t.Helper()
	c, err := ResolveConn(f.c.URL(f.db), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fixture) source(t testing.TB, name string) Source {
	t.Helper()
	loc := storage.NewDir("local", f.dir)
	b, err := loc.Stat(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return Source{Location: loc, Backup: b}
}

func (f *fixture) keys(t *testing.T) *Keys {
	t.Helper()
	ents, err := ReadKeyFile(f.key_(t).SecretFile)
	if err != nil {
		t.Fatal(err)
	}
	return &Keys{Entities: ents}
}

// databasesLike lists databases whose names start with prefix.
func (f *fixture) databasesLike(t testing.TB, prefix string) []string {
	var out []string
	for _, d := range f.c.Databases(t) {
		if strings.HasPrefix(d, prefix) {
			out = append(out, d)
		}
	}
	return out
}

// assertUntouched checks the live database still holds what it held and no scratch
// database was left behind.
func (f *fixture) assertUntouched(t *testing.T, want string) {
	t.Helper()
	if got := fingerprint(t, f.c, f.db); got != want {
		t.Errorf("live database changed:\n got %s\nwant %s", got, want)
	}
	if left := f.databasesLike(t, f.db+"_restore_"); len(left) > 0 {
		t.Errorf("scratch databases left behind: %v", left)
	}
	if roles := f.loadRoles(t); len(roles) > 0 {
		t.Errorf("loading roles left behind: %v", roles)
	}
}

// loadRoles lists the sandbox roles that restores of the fixture's database left: not
// those of a restore still running (its lock held).
func (f *fixture) loadRoles(t testing.TB) []string {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, f.c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if held, err := lockHeld(ctx, admin, f.db); err != nil || held {
		return nil // a restore of it is running: its role is in use
	}
	var out []string
	for _, r := range f.c.Query(t, "postgres", `SELECT rolname, coalesce(shobj_description(oid, 'pg_authid'), '') FROM pg_roles WHERE starts_with(rolname, 'drconsole_load_')`) {
		if m, ok := parseMarker(r[1]); !ok || m.Target == f.db {
			out = append(out, r[0])
		}
	}
	return out
}

// pgDump runs the cluster's pg_dump on the live database with args and writes the
// output to name in the backup directory.
func (f *fixture) pgDump(t *testing.T, name string, args ...string) string {
	t.Helper()
	run(t, f.c.Env(f.db), filepath.Join(f.c.BinDir, "pg_dump"), append(args, "-f", filepath.Join(f.dir, name), f.db)...)
	return name
}

// path is where a backup of the directory lives.
func (f *fixture) path(name string) string { return filepath.Join(f.dir, name) }

// restoreInto runs Prepare and Restore, checks that the restored database holds every
// row of the backed-up data, then drops it and checks the live database is untouched.
func (f *fixture) restoreInto(t *testing.T, name string, opts Options) *Restored {
	t.Helper()
	ctx := context.Background()
	if opts.Conn == nil {
		opts.Conn = f.conn(t)
	}
	plan, err := Prepare(ctx, f.source(t, name), opts)
	if err != nil {
		t.Fatalf("prepare %s: %v", name, err)
	}
	r, err := plan.Restore(ctx, nil)
	if err != nil {
		t.Fatalf("restore %s: %v", name, err)
	}
	if got := fingerprint(t, f.c, r.Database); got != f.print {
		t.Errorf("restored %s differs from the backed-up data:\n got %s\nwant %s", name, got, f.print)
	}
	if err := r.Abandon(ctx); err != nil {
		t.Fatal(err)
	}
	f.assertUntouched(t, f.print)
	return r
}

// assertBad checks err is the sentinel want, in one line, and nothing was touched.
func (f *fixture) assertBad(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is more than one line: %q", err)
	}
	f.assertUntouched(t, f.print)
}
