package parallel

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"drconsole/internal/pgtest"
	"drconsole/recovery/pgarchive"
)

func TestSplitStatements(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		std  bool
		want []string
	}{
		{"CREATE INDEX a ON t (x);\n\nALTER TABLE t CLUSTER ON a;\n", true, []string{"CREATE INDEX a ON t (x)", "ALTER TABLE t CLUSTER ON a"}},
		{`CREATE INDEX "a;b" ON t (x) WHERE (y = 'c;d''e');`, true, []string{`CREATE INDEX "a;b" ON t (x) WHERE (y = 'c;d''e')`}},
		{`SELECT E'a\';b'; SELECT 2`, true, []string{`SELECT E'a\';b'`, "SELECT 2"}},
		{`SELECT 'a\'; SELECT 2`, true, []string{`SELECT 'a\'`, "SELECT 2"}},
		{`SELECT 'a\'; SELECT 2'`, false, []string{`SELECT 'a\'; SELECT 2'`}},
		{"SELECT $x$;$x$; SELECT $$;$$", true, []string{"SELECT $x$;$x$", "SELECT $$;$$"}},
		{"SELECT 1 -- ; not here\n; SELECT /* ; /* nested ; */ */ 2", true, []string{"SELECT 1 -- ; not here", "SELECT /* ; /* nested ; */ */ 2"}},
		{"SELECT a$1; SELECT 2", true, []string{"SELECT a$1", "SELECT 2"}},
	} {
		got, err := splitStatements(tc.sql, tc.std)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("splitStatements(%q) = %q, %v\nwant %q", tc.sql, got, err, tc.want)
		}
	}
	for _, bad := range []string{"SELECT 'x", `SELECT "x`, "SELECT /* x", "SELECT $a$ x"} {
		if _, err := splitStatements(bad, true); err == nil {
			t.Errorf("splitStatements(%q) accepted", bad)
		}
	}
}

func TestParseUnique(t *testing.T) {
	for stmt, want := range map[string]string{
		"ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id)": `CREATE UNIQUE INDEX "t_pkey" ON "public"."t" USING btree ("id")` +
			`|ALTER TABLE ONLY "public"."t" ADD CONSTRAINT "t_pkey" PRIMARY KEY USING INDEX "t_pkey"`,
		"ALTER TABLE ONLY s.\"Odd T\"\n    ADD CONSTRAINT \"K\" UNIQUE NULLS NOT DISTINCT (a, \"B\") INCLUDE (c) WITH (fillfactor='70')": `CREATE UNIQUE INDEX "K" ON "s"."Odd T" USING btree ("a", "B") INCLUDE ("c") NULLS NOT DISTINCT WITH (fillfactor='70')` +
			`|ALTER TABLE ONLY "s"."Odd T" ADD CONSTRAINT "K" UNIQUE USING INDEX "K"`,
		"ALTER TABLE ONLY public.t\n    ADD CONSTRAINT u UNIQUE (a) DEFERRABLE INITIALLY DEFERRED": "",
		"ALTER TABLE ONLY public.t\n    ADD CONSTRAINT x EXCLUDE USING gist (r WITH &&)":           "",
		"ALTER TABLE public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id)":                         "",
		"ALTER TABLE ONLY public.t\n    ADD CONSTRAINT u UNIQUE (a) WITH (x=(1))":                  "",
	} {
		u := parseUnique(stmt)
		got := ""
		if u != nil {
			it := &item{unique: u, stmts: []string{stmt}}
			build := (&plan{}).split(it)
			got = build.stmts[0] + "|" + it.stmts[0]
		}
		if got != want {
			t.Errorf("parseUnique(%q):\n got %s\nwant %s", stmt, got, want)
		}
	}
}

// dumpOf makes a pg_dump -Fc archive of sql and reads its TOC.
func dumpOf(t *testing.T, c *pgtest.Cluster, sql string, args ...string) *pgarchive.Archive {
	t.Helper()
	db := c.NewDB(t)
	c.Exec(t, db, sql)
	path := filepath.Join(t.TempDir(), "d.dump")
	cmd := exec.Command(filepath.Join(c.BinDir, "pg_dump"), append(append([]string{"-Fc", "-b", "-f", path}, args...), db)...)
	cmd.Env = append(os.Environ(), c.Env(db)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := pgarchive.ReadTOC(bufio.NewReader(bytes.NewReader(b)), true)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

const planSchema = `
CREATE TABLE p (id int PRIMARY KEY, v text);
CREATE TABLE c (id int PRIMARY KEY, p int REFERENCES p(id), d date NOT NULL) ;
CREATE INDEX c_p ON c (p);
CREATE TABLE part (id int, d date, PRIMARY KEY (id, d)) PARTITION BY RANGE (d);
CREATE TABLE part_1 PARTITION OF part FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TRIGGER t BEFORE INSERT ON c FOR EACH ROW EXECUTE FUNCTION f();
COMMENT ON INDEX c_p IS 'an index';
CREATE SEQUENCE s; SELECT setval('s', 42);
GRANT SELECT ON p TO PUBLIC;
INSERT INTO p VALUES (1, 'x');
`

func TestPlan(t *testing.T) {
	c := pgtest.Start(t)
	a := dumpOf(t, c, planSchema)
	p, err := newPlan(a)
	if err != nil {
		t.Fatal(err)
	}
	descs := func(ids []int) string {
		var out []string
		for _, id := range ids {
			e := a.Entry(id)
			out = append(out, e.Desc+" "+e.Tag)
		}
		return strings.Join(out, ", ")
	}
	pre, post := descs(p.preData), descs(p.postData)
	for _, want := range []string{"TABLE p", "TABLE c", "FUNCTION f()", "SEQUENCE s", "TABLE ATTACH part_1"} {
		if !strings.Contains(pre, want) {
			t.Errorf("pre-data lacks %s: %s", want, pre)
		}
	}
	for _, want := range []string{"SEQUENCE SET s", "TRIGGER c t", "COMMENT INDEX c_p", "ACL TABLE p"} {
		if !strings.Contains(post, want) {
			t.Errorf("pg_restore's post-data lacks %s: %s", want, post)
		}
	}
	if strings.Contains(pre, "ACL") || strings.Contains(pre+post, "TABLE DATA") || slices.Contains(strings.Split(pre+", "+post, ", "), "INDEX c_p") {
		t.Errorf("pre-data %s\npost-data %s", pre, post)
	}
	var items []string
	for _, it := range p.items {
		items = append(items, it.what)
		if it.entry.Desc == "FK CONSTRAINT" && (len(it.tables) != 2 || len(it.waitItems) != 1 || len(it.waitData) != 2 || !it.exclusive) {
			t.Errorf("foreign key: tables %v, waits for %d items and data %v", it.tables, len(it.waitItems), it.waitData)
		}
		if it.entry.Tag == "c_p" && (it.exclusive || len(it.waitData) != 1) {
			t.Errorf("index c_p: exclusive %v, waits for data %v", it.exclusive, it.waitData)
		}
	}
	if len(items) != 7 { // 4 keys, c_p, part_1's key attached to part's, the foreign key
		t.Errorf("items: %v", items)
	}
	if len(p.data) != 3 || p.encoding != "UTF8" || !p.std {
		t.Errorf("data %d, encoding %s, std %v", len(p.data), p.encoding, p.std)
	}
}

// What the engine does not reproduce exactly is refused, in one line that says why; the
// caller then restores with pg_restore.
func TestPlanRefuses(t *testing.T) {
	c := pgtest.Start(t)
	base := func() *pgarchive.Archive { return dumpOf(t, c, planSchema) }
	entry := func(a *pgarchive.Archive, desc, tag string) *pgarchive.Entry {
		for _, e := range a.Entries {
			if e.Desc == desc && e.Tag == tag {
				return e
			}
		}
		t.Fatalf("no %s %s", desc, tag)
		return nil
	}
	for _, tc := range []struct {
		name   string
		change func(a *pgarchive.Archive)
		want   string
	}{
		{"lz4", func(a *pgarchive.Archive) { a.Compression = "lz4" }, "compressed with lz4"},
		{"zstd", func(a *pgarchive.Archive) { a.Compression = "zstd" }, "compressed with zstd"},
		{"newer format", func(a *pgarchive.Archive) { a.Version.Minor = 17 }, "archive version 1.17"},
		{"not kept", func(a *pgarchive.Archive) { a.Raw = nil }, "not kept"},
		{"statement after an index", func(a *pgarchive.Archive) {
			entry(a, "INDEX", "c_p").Defn += "DROP TABLE p;\n"
		}, "unusual INDEX entry"},
		{"comment before an index", func(a *pgarchive.Archive) {
			e := entry(a, "INDEX", "c_p")
			e.Defn = "/* x */ " + e.Defn
		}, "unusual INDEX entry"},
		{"an index needs a trigger", func(a *pgarchive.Archive) {
			e := entry(a, "INDEX", "c_p")
			e.Deps = append(e.Deps, entry(a, "TRIGGER", "c t").ID)
		}, "which pg_restore restores after it"},
		{"odd search path", func(a *pgarchive.Archive) {
			entry(a, "SEARCHPATH", "SEARCHPATH").Defn = "SELECT pg_catalog.set_config('search_path', 'public', false);\n"
		}, "unusual SEARCHPATH"},
		{"data of something else", func(a *pgarchive.Archive) {
			entry(a, "SEQUENCE SET", "s").HadDumper = true
		}, "unusual entry with data: SEQUENCE SET"},
		{"with OIDs", func(a *pgarchive.Archive) { entry(a, "TABLE", "p").WithOIDs = true }, "OIDs"},
		{"a dependency loop", func(a *pgarchive.Archive) {
			pk, fk := entry(a, "CONSTRAINT", "p p_pkey"), entry(a, "FK CONSTRAINT", "c c_p_fkey")
			pk.Deps = append(pk.Deps, fk.ID)
		}, "depends on itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := base()
			tc.change(a)
			err := Check(a)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Check = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("INSERT statements", func(t *testing.T) {
		a := dumpOf(t, c, planSchema, "--inserts")
		if err := Check(a); err == nil || !strings.Contains(err.Error(), "not COPY data") {
			t.Errorf("Check = %v", err)
		}
	})
}

// Heavy index builds share the CPUs no other work claims, side by side rather than one
// with workers; one waits for a CPU rather than share one; light work starts at once.
func TestTakeClaimsCPUs(t *testing.T) {
	heavy1 := &item{what: "heavy 1", tables: []int{1}, builds: true, size: heavyBytes}
	heavy2 := &item{what: "heavy 2", tables: []int{1}, builds: true, size: heavyBytes}
	heavy3 := &item{what: "heavy 3", tables: []int{1}, builds: true, size: heavyBytes}
	light := &item{what: "light", tables: []int{2}, builds: true, size: 1 << 20}
	e := &engine{cfg: Config{CPUs: 2, Jobs: 3, MaintenanceWorkMem: 32 << 20, MaintenanceWorkers: -1},
		locks: map[int]*tableLock{1: {}, 2: {}}, ready: []*item{heavy1, heavy2, heavy3, light}, left: 4}
	take := func(want *item, workers int) {
		t.Helper()
		it, _ := e.take()
		if it != want {
			name := "nothing"
			if it != nil {
				name = it.what
			}
			t.Fatalf("took %s, want %v", name, want)
		}
		if it != nil && it.workers != workers {
			t.Fatalf("%s: %d workers, want %d", it.what, it.workers, workers)
		}
	}
	take(heavy1, 0) // three ready, three connections, two CPUs: one each, no workers
	take(heavy2, 0)
	take(light, 0) // light work does not wait
	take(nil, 0)   // heavy 3 waits for a CPU
	e.claimed, e.running = 0, 0
	take(heavy3, 1) // alone: both CPUs, itself and a worker
}
