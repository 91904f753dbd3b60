package recovery

import (
	"context"
	"strings"
	"testing"

	"drconsole/internal/pgtest"
)

// A fresh DR server lacks the application's role: say so before anything starts, and
// restore with --no-owner when asked.
func TestRestoreNeedsTheArchiveOwnersRoles(t *testing.T) {
	f := newFixture(t)
	role := "App Owner " + strings.TrimPrefix(f.db, "testrestoreneedsthearchiveownersrol")
	quoted := `"` + role + `"`
	f.c.Exec(t, "postgres", `CREATE ROLE `+quoted)
	t.Cleanup(func() {
		f.c.Exec(t, f.db, `REASSIGN OWNED BY `+quoted+` TO postgres; DROP OWNED BY `+quoted)
		f.c.Exec(t, "postgres", `DROP ROLE `+quoted)
	})
	f.c.Exec(t, f.db, `ALTER TABLE "User" OWNER TO `+quoted+`; ALTER TABLE "Guild" OWNER TO `+quoted+`; ALTER TYPE "Role" OWNER TO `+quoted)
	name := f.pgDump(t, "spywatcher_full_20240125_120000.dump", "-Fc")

	dr := pgtest.Start(t)
	conn, err := ResolveConn(dr.URL(f.db), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = Prepare(ctx, f.source(t, name), Options{Conn: conn})
	f.assertBad(t, err, ErrPreflight)
	if !strings.Contains(err.Error(), role) || !strings.Contains(err.Error(), "--no-owner") {
		t.Errorf("error does not name the missing role: %v", err)
	}
	if dbs := dr.Databases(t); len(dbs) != 1 || dbs[0] != "postgres" {
		t.Errorf("DR server databases after a refusal: %v", dbs)
	}

	plan, err := Prepare(ctx, f.source(t, name), Options{Conn: conn, NoOwner: true})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Mode != ModeCreate {
		t.Errorf("mode = %s, want create on a fresh server", plan.Mode)
	}
	r, err := plan.Restore(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Swap(ctx, nil, SwapOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := fingerprint(t, dr, f.db); got != f.print {
		t.Errorf("restored on the DR server:\n got %s\nwant %s", got, f.print)
	}
	if owners := dr.Query(t, f.db, `SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'`); len(owners) != 1 || owners[0][0] != dr.User {
		t.Errorf("owners with --no-owner: %v", owners)
	}
	f.assertUntouched(t, f.print)
}
