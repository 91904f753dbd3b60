package recovery

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"drconsole/internal/gpgtest"
)

// A plain dump that switches databases must never be replayed beside the live one:
// refused up front when it says so at the top (pg_dump -C), and mid-stream otherwise.
func TestPlainSQLThatSwitchesDatabaseIsRefused(t *testing.T) {
	f := newFixture(t)
	name := f.pgDump(t, "spywatcher_full_20240101_000000.sql", "-Fp", "-C")
	_, err := Prepare(context.Background(), f.source(t, name), Options{Conn: f.conn(t)})
	f.assertBad(t, err, ErrPreflight)

	plain := f.pgDump(t, "p.sql", "-Fp")
	body, err := os.ReadFile(f.path(plain))
	if err != nil {
		t.Fatal(err)
	}
	padding := strings.Repeat("-- padding so the switch is far past the first megabyte\n", 30000)
	evil := "-- hand-made dump\n" + padding + "\\connect " + f.db + "\nDROP TABLE \"Session\";\nDELETE FROM \"ApiKey\";\n" + string(body)
	name = f.write(t, "spywatcher_full_20240102_000000.sql", []byte(evil))
	err = restoreAll(t, f.source(t, name), Options{Conn: f.conn(t)})
	f.assertBad(t, err, ErrPreflight)
	if !strings.Contains(err.Error(), `\connect`) {
		t.Errorf("error does not quote the line: %v", err)
	}
}

// The operator's prompt failing (stdin closed, Ctrl-C) is not a damaged backup.
func TestPassphrasePromptFails(t *testing.T) {
	f := newFixture(t)
	f.pgDump(t, "raw.dump", "-Fc")
	name := "spywatcher_full_20240125_120000.dump.gpg"
	gpgtest.EncryptSymmetric(t, "pw", f.path("raw.dump"), f.path(name))
	for _, tc := range []struct {
		askErr, want error
	}{
		{io.EOF, ErrNoKey},
		{errors.New("not a terminal"), ErrNoKey},
		{ErrCancelled, ErrCancelled},
		{context.Canceled, ErrCancelled},
	} {
		t.Run(tc.askErr.Error(), func(t *testing.T) {
			keys := &Keys{Ask: func(string) ([]byte, error) { return nil, tc.askErr }}
			err := restoreAll(t, f.source(t, name), Options{Conn: f.conn(t), Keys: keys})
			f.assertBad(t, err, tc.want)
		})
	}
}

// Swap ends the application's sessions on the live database and keeps the old one
// open for connections afterwards.
func TestSwapEndsLiveSessions(t *testing.T) {
	f := newFixture(t)
	name := f.backupJob(t, "20240125_120000")
	ctx := context.Background()
	app, err := f.conn(t).Connect(ctx, f.db)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(ctx)
	f.c.Exec(t, f.db, `DELETE FROM "Session"`)
	plan, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: f.keys(t)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := plan.Restore(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := r.Swap(ctx, nil, SwapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Ping(ctx); err == nil {
		t.Error("the application's session on the old database survived the swap")
	}
	if got := fingerprint(t, f.c, f.db); got != f.print {
		t.Errorf("live after swap:\n got %s\nwant %s", got, f.print)
	}
	kept, err := f.conn(t).Connect(ctx, sw.Kept)
	if err != nil {
		t.Fatalf("kept database refuses connections: %v", err)
	}
	kept.Close(ctx)
}

// Database names that need quoting survive scratch, swap and kept names.
func TestSwapDatabaseWithAwkwardName(t *testing.T) {
	f := newFixture(t)
	name := f.backupJob(t, "20240125_120000")
	weird := f.db + `_Wé "ird" d'b`
	f.c.CreateDB(t, weird)
	f.c.Exec(t, weird, `CREATE TABLE "User" (id int); CREATE TABLE "Guild" (id int); CREATE TABLE "ApiKey" (id int); CREATE TABLE "Session" (id int)`)
	ctx := context.Background()
	plan, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t).With(weird), Keys: f.keys(t), FromDB: f.db})
	if err != nil {
		t.Fatal(err)
	}
	r, err := plan.Restore(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := r.Swap(ctx, nil, SwapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fingerprint(t, f.c, weird); got != f.print {
		t.Errorf("after swap:\n got %s\nwant %s", got, f.print)
	}
	if !contains(f.c.Databases(t), sw.Kept) || len(sw.Kept) > 63 {
		t.Errorf("kept %q missing or too long", sw.Kept)
	}
	f.assertUntouched(t, f.print)
}
