package incident

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"drconsole/checklists"
	"drconsole/internal/pgtest"
	"drconsole/recovery"
	"drconsole/storage"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// rig is a live database, a backup of it (pg_dump -Fc) and an open incident.
type rig struct {
	c    *pgtest.Cluster
	db   string
	src  recovery.Source
	conn *recovery.Conn
	j    *checklists.Journal
	live string // the live data's fingerprint, damaged after the backup
}

func newRig(t *testing.T, drill bool) *rig {
	t.Helper()
	c := pgtest.Shared(t)
	r := &rig{c: c, db: c.NewDB(t)}
	c.Exec(t, r.db, `CREATE TABLE "User" (id int PRIMARY KEY, name text); INSERT INTO "User" SELECT g, 'u' || g FROM generate_series(1, 100) g`)
	dir := t.TempDir()
	name := "spywatcher_full_20240125_120000.dump"
	dump := exec.Command(filepath.Join(c.BinDir, "pg_dump"), "-Fc", "-f", filepath.Join(dir, name), r.db)
	dump.Env = append(os.Environ(), c.Env(r.db)...)
	if out, err := dump.CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v %s", err, out)
	}
	loc := storage.NewDir("local", dir)
	b, err := loc.Stat(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	r.src = recovery.Source{Location: loc, Backup: b}
	c.Exec(t, r.db, `DELETE FROM "User" WHERE id > 50`)
	r.live = r.fingerprint(t)
	if r.conn, err = recovery.ResolveConn(c.URL(r.db), func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	sc, _ := checklists.Default().Scenario(checklists.DefaultScenario)
	r.j, err = checklists.StartIncident(checklists.StartOptions{StateDir: t.TempDir(), Scenario: sc, Drill: drill, Operator: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.j.Close()
		for _, d := range c.Databases(t) {
			if strings.HasPrefix(d, r.db+"_") {
				c.Exec(t, "postgres", `DROP DATABASE "`+d+`" WITH (FORCE)`)
			}
		}
	})
	return r
}

func (r *rig) fingerprint(t *testing.T) string {
	return r.c.Query(t, r.db, `SELECT count(*) || ':' || md5(string_agg(name, ',' ORDER BY id)) FROM "User"`)[0][0]
}

func (r *rig) restore(t *testing.T, run *Run) *Attempt {
	t.Helper()
	plan, err := recovery.Prepare(context.Background(), r.src, recovery.Options{Conn: r.conn})
	if err != nil {
		t.Fatal(err)
	}
	a, err := run.Restore(context.Background(), plan, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A journal that cannot record the swap before it happens stops it: nothing changes, and
// the copy can still be abandoned.
func TestNoJournalNoSwap(t *testing.T) {
	r := newRig(t, false)
	run := New(r.j, "alice", false)
	a := r.restore(t, run)
	r.j.Close() // every write from now on fails, as on a full disk
	_, err := a.Swap(context.Background(), nil, false)
	if !errors.Is(err, ErrJournal) || !strings.Contains(err.Error(), "swap not started") {
		t.Fatalf("swap with a journal that cannot be written: %v", err)
	}
	if r.fingerprint(t) != r.live {
		t.Error("live changed")
	}
	if run.Err() == nil {
		t.Error("the journal failure is not kept for the caller")
	}
	if err := a.Abandon(context.Background(), "journal failing"); err != nil {
		t.Fatal(err)
	}
	for _, d := range r.c.Databases(t) {
		if strings.HasPrefix(d, r.db+"_restore_") {
			t.Errorf("scratch left: %s", d)
		}
	}
}

// A drill restores and checks for real, and never swaps, whatever the caller asks.
func TestDrillNeverSwaps(t *testing.T) {
	r := newRig(t, true)
	run := New(r.j, "alice", false) // the journal says drill
	a := r.restore(t, run)
	if _, err := a.Swap(context.Background(), nil, true); !errors.Is(err, ErrDrill) {
		t.Fatalf("a drill's swap: %v", err)
	}
	if r.fingerprint(t) != r.live {
		t.Error("a drill changed the live database")
	}
	if err := a.Abandon(context.Background(), "drill over"); err != nil {
		t.Fatal(err)
	}
	if got := r.j.Incident().Restore().State(); got != checklists.ResultAbandoned {
		t.Errorf("drill's restore: %s", got)
	}
}

// One attempt is one record from start to outcome, with the swap before and after it, and
// its outcome ok only once the copy is live.
func TestAttemptRecord(t *testing.T) {
	r := newRig(t, false)
	run := New(r.j, "alice", false)
	a := r.restore(t, run)
	if got := r.j.Incident().Restore().State(); got != checklists.StateLoaded {
		t.Fatalf("after the load: %s", got)
	}
	sw, err := a.Swap(context.Background(), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	inc := r.j.Incident()
	rec := inc.Restore()
	if len(inc.Restores) != 1 || rec.State() != checklists.ResultOK || rec.KeptDB != sw.Kept || rec.Swap == nil || rec.Swap.Result != checklists.ResultOK || rec.Swap.ScratchOID == 0 {
		t.Fatalf("record: %+v swap %+v", rec, rec.Swap)
	}
	var types []string
	for _, e := range inc.Events {
		types = append(types, string(e.Type))
	}
	order := strings.Join(types, " ")
	for _, want := range []string{"restore_started", "rows_counted", "restore_loaded", "swap_started", "swap_finished", "restore_finished"} {
		i := strings.Index(order, want)
		if i < 0 {
			t.Fatalf("no %s in %s", want, order)
		}
		order = order[i:]
	}
	rep := checklists.BuildReport(inc, nil, inc.LastEvent)
	if rep.Restore.Result != checklists.ResultOK || rep.Restore.Attempts != 1 || rep.Restore.KeptDB == "" {
		t.Errorf("report: %+v", rep.Restore)
	}
	// Each table's rows are on record, as the file holds them: the backup's 100 users, all
	// restored, beside the 50 the damaged live database had.
	read, _, err := checklists.ReadJournal(r.j.Path())
	if err != nil {
		t.Fatal(err)
	}
	want := []checklists.TableRows{{Name: "public.User", Archive: 100, Restored: 100, Live: 50, State: "ok"}}
	if got := read.Restore().Rows; !reflect.DeepEqual(got, want) {
		t.Errorf("journaled rows: %+v, want %+v", got, want)
	}
	if md := checklists.BuildReport(read, nil, read.LastEvent).Markdown(); !strings.Contains(md, "| public.User | 100 | 100 | 50 | ok |") {
		t.Errorf("the report lacks the table's rows:\n%s", md)
	}
}
