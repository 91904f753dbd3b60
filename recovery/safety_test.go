package recovery

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"drconsole/internal/gpgtest"
)

// Two restores of one target never overlap, whichever process runs them: the second is
// refused in pre-flight, naming who holds the target, until the first is done with it.
func TestOneRestoreAtATimePerTarget(t *testing.T) {
	f := newFixture(t)
	name := f.backupJob(t, "20240125_120000")
	ctx := context.Background()
	first, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: f.keys(t)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: f.keys(t)})
	f.assertBad(t, err, ErrPreflight)
	if !strings.Contains(err.Error(), "another restore of") || !strings.Contains(err.Error(), "pid") {
		t.Errorf("the refusal does not say who holds the target: %v", err)
	}
	// While the first waits for its swap, the target stays held.
	r, err := first.Restore(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: f.keys(t)}); !errors.Is(err, ErrPreflight) {
		t.Fatalf("a second restore while the first waits for its swap: %v", err)
	}
	if err := r.Abandon(ctx); err != nil {
		t.Fatal(err)
	}
	second, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: f.keys(t)})
	if err != nil {
		t.Fatalf("after the first was abandoned: %v", err)
	}
	second.Release()
	f.assertUntouched(t, f.print)
}

// A backup of another database never replaces the target unless the operator names it.
func TestBackupOfAnotherDatabaseIsRefused(t *testing.T) {
	f := newFixture(t)
	other := f.c.NewDB(t)
	f.c.Exec(t, other, `CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'other app')`)
	run(t, f.c.Env(other), filepath.Join(f.c.BinDir, "pg_dump"), "-Fc", "-f", f.path("spywatcher_full_20240125_120000.dump"), other)
	ctx := context.Background()
	_, err := Prepare(ctx, f.source(t, "spywatcher_full_20240125_120000.dump"), Options{Conn: f.conn(t)})
	f.assertBad(t, err, ErrWrongDatabase)
	var wrong *WrongDatabaseError
	if !errors.As(err, &wrong) || wrong.Archive != other || !strings.Contains(err.Error(), "--from-db "+other) {
		t.Errorf("the refusal does not name the backup's database and the way to proceed: %v", err)
	}
	// Naming some other database is not naming this one.
	_, err = Prepare(ctx, f.source(t, "spywatcher_full_20240125_120000.dump"), Options{Conn: f.conn(t), FromDB: "spywatcher"})
	f.assertBad(t, err, ErrWrongDatabase)

	// Named: it restores, and the swap is held because live's tables are not in the copy.
	plan, err := Prepare(ctx, f.source(t, "spywatcher_full_20240125_120000.dump"), Options{Conn: f.conn(t), FromDB: other})
	if err != nil {
		t.Fatal(err)
	}
	r, err := plan.Restore(ctx, nil)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	held := Unconfirmed(r.Checks)
	if len(held) != 1 || !strings.Contains(held[0].Detail, `public.User`) {
		t.Fatalf("the missing tables do not hold the swap: %+v", r.Checks)
	}
	if _, err := r.Swap(ctx, nil, SwapOptions{}); !errors.Is(err, ErrChecksFailed) {
		t.Fatalf("swap without confirmation: %v", err)
	}
	if got := fingerprint(t, f.c, f.db); got != f.print {
		t.Fatal("live changed by a refused swap")
	}
	if _, err := r.Swap(ctx, nil, SwapOptions{AcceptMissingTables: true}); err != nil {
		t.Fatalf("confirmed swap: %v", err)
	}
	if rows := f.c.Query(t, f.db, `SELECT body FROM notes`); len(rows) != 1 || rows[0][0] != "other app" {
		t.Errorf("after the confirmed swap: %v", rows)
	}
}

// Target names are names: never connection settings, never the server's own databases.
func TestTargetNamesAreValidated(t *testing.T) {
	f := newFixture(t)
	name := f.backupJob(t, "20240125_120000")
	ctx := context.Background()
	for _, target := range []string{"dbname=" + f.db, "postgres://x/" + f.db, "host=/tmp dbname=x", " " + f.db, "bad\nname", "bad\x1b[2Jname", "postgres", "template1", strings.Repeat("x", 64)} {
		_, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: f.keys(t), TestDB: target})
		f.assertBad(t, err, ErrPreflight)
		_, err = Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t).With(target), Keys: f.keys(t), FromDB: f.db})
		f.assertBad(t, err, ErrPreflight)
	}
	// A quoted, odd but valid name is taken literally by pg_restore, not as settings.
	odd := f.db + ` it's "odd"`
	plan, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: f.keys(t), TestDB: odd})
	if err != nil {
		t.Fatal(err)
	}
	r, err := plan.Restore(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := fingerprint(t, f.c, odd); got != f.print {
		t.Errorf("restored into %q: %s", odd, got)
	}
	if err := r.Drop(ctx); err != nil {
		t.Fatal(err)
	}
}

// A prepared transaction on the live database would block the rename: found in
// pre-flight, before any row is loaded.
func TestPreparedTransactionRefusedInPreflight(t *testing.T) {
	f := newFixture(t)
	name := f.backupJob(t, "20240125_120000")
	f.c.Exec(t, f.db, `BEGIN; UPDATE "Session" SET data = 'x'; PREPARE TRANSACTION 'held_`+f.db+`'`)
	t.Cleanup(func() { f.c.Exec(t, f.db, `ROLLBACK PREPARED 'held_`+f.db+`'`) })
	_, err := Prepare(context.Background(), f.source(t, name), Options{Conn: f.conn(t), Keys: f.keys(t)})
	f.assertBad(t, err, ErrPreflight)
	if !strings.Contains(err.Error(), "prepared transaction") {
		t.Errorf("error: %v", err)
	}
}

// What a killed restore leaves is found by its mark (or, unmarked, by its name), listed
// with its target, and dropped on request; a restore running now is never dropped.
func TestLeftoversFoundAndDropped(t *testing.T) {
	f := newFixture(t)
	name := f.backupJob(t, "20240125_120000")
	ctx := context.Background()
	plan, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: f.keys(t)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := plan.Restore(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A restore waiting for its swap is in use, not a leftover to drop.
	list, err := FindLeftovers(ctx, f.conn(t))
	if err != nil {
		t.Fatal(err)
	}
	l := findLeftover(list, plan.Scratch)
	if l == nil || !l.InUse || !l.Marked || l.Target != f.db || l.Backup != name || l.Role != RoleScratch || l.Size <= 0 {
		t.Fatalf("scratch of a running restore: %+v", l)
	}
	if err := DropLeftover(ctx, f.conn(t), plan.Scratch); !errors.Is(err, ErrPreflight) || !contains(f.c.Databases(t), plan.Scratch) {
		t.Fatalf("dropped a running restore's scratch: %v", err)
	}
	// The run ends without cleaning up (its lock goes with its session, as on kill -9).
	plan.lock.release()
	r.finished = true
	// And an unmarked one, as a kill between CREATE DATABASE and the mark leaves it.
	bare := f.db + "_restore_20240101_000000"
	f.c.CreateDB(t, bare)
	list, err = FindLeftovers(ctx, f.conn(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{plan.Scratch, bare} {
		l := findLeftover(list, n)
		if l == nil || l.InUse || l.Target != f.db {
			t.Fatalf("leftover %s: %+v", n, l)
		}
		if !strings.Contains(l.Describe(time.Now()), n) {
			t.Errorf("describe: %s", l.Describe(time.Now()))
		}
	}
	if err := DropLeftover(ctx, f.conn(t), plan.Scratch); err != nil {
		t.Fatal(err)
	}
	// A database only named like a restore's (another tool's, a person's) is listed but
	// never dropped: the name proves nothing.
	if l := findLeftover(list, bare); l.Marked || l.Droppable() || !strings.Contains(l.Describe(time.Now()), "unmarked") {
		t.Errorf("an unmarked database: %+v, %s", l, l.Describe(time.Now()))
	}
	if err := DropLeftover(ctx, f.conn(t), bare); !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "no drconsole mark") || !contains(f.c.Databases(t), bare) {
		t.Fatalf("DropLeftover of an unmarked database: %v", err)
	}
	f.c.Exec(t, "postgres", `DROP DATABASE "`+bare+`"`)
	// Only drconsole's databases are dropped, whatever the name given.
	if err := DropLeftover(ctx, f.conn(t), f.db); !errors.Is(err, ErrPreflight) {
		t.Fatalf("DropLeftover of the live database: %v", err)
	}
	f.assertUntouched(t, f.print)
}

func findLeftover(list []Leftover, name string) *Leftover {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

// An older drconsole committed ALLOW_CONNECTIONS false before its renames; killed there,
// it left production refusing every connection. Repair reopens it, and only databases
// that are drconsole's business.
func TestRepairReopensWhatAnInterruptedSwapClosed(t *testing.T) {
	f := newFixture(t)
	f.c.CreateDB(t, f.db+"_restore_20240101_000000") // the sign of an interrupted swap
	f.c.Exec(t, "postgres", `ALTER DATABASE "`+f.db+`" ALLOW_CONNECTIONS false`)
	someone := f.c.NewDB(t)
	// A kept copy closed on purpose (so nobody writes to the evidence) stays closed, and so
	// does any database someone else closed.
	kept := f.db + "_pre_restore_20240101_000000"
	f.c.CreateDB(t, kept)
	for _, db := range []string{someone, kept} {
		f.c.Exec(t, "postgres", `ALTER DATABASE "`+db+`" ALLOW_CONNECTIONS false`)
		t.Cleanup(func() { f.c.Exec(t, "postgres", `ALTER DATABASE "`+db+`" ALLOW_CONNECTIONS true`) })
	}
	did, err := Repair(context.Background(), f.conn(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(did) == 0 || !strings.Contains(did[0], f.db+" refused every connection") {
		t.Errorf("repaired: %v", did)
	}
	if got := fingerprint(t, f.c, f.db); got != f.print {
		t.Error("live changed")
	}
	if rows := f.c.Query(t, "postgres", `SELECT datname FROM pg_database WHERE NOT datallowconn AND datname IN ('`+someone+`', '`+kept+`')`); len(rows) != 2 {
		t.Errorf("a database closed by someone else was reopened: still closed %v", rows)
	}
}

// Applications that keep reconnecting while the swap runs do not stop it, and nothing they
// do can land between the two renames.
func TestSwapWhileClientsKeepReconnecting(t *testing.T) {
	f := newFixture(t)
	name := f.backupJob(t, "20240125_120000")
	ctx := context.Background()
	plan, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: f.keys(t)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := plan.Restore(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.c.Exec(t, f.db, `DELETE FROM "Session"`) // the damaged live data
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var connected atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := pgx.Connect(ctx, f.c.URL(f.db))
				if err == nil {
					connected.Add(1)
					c.Exec(ctx, `SELECT pg_sleep(0.05)`)
					c.Close(ctx)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	sw, err := r.Swap(ctx, nil, SwapOptions{})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("swap under reconnecting clients: %v", err)
	}
	if connected.Load() == 0 {
		t.Fatal("the clients never connected")
	}
	if got := fingerprint(t, f.c, f.db); got != f.print {
		t.Errorf("live after the swap:\n got %s\nwant %s", got, f.print)
	}
	if rows := f.c.Query(t, "postgres", `SELECT datallowconn FROM pg_database WHERE datname IN ('`+f.db+`', '`+sw.Kept+`')`); len(rows) != 2 || rows[0][0] != "t" || rows[1][0] != "t" {
		t.Errorf("after the swap, connections: %v", rows)
	}
	l := findLeftover(mustLeftovers(t, f), sw.Kept)
	if l == nil || l.Role != RoleKept || l.Target != f.db {
		t.Errorf("the kept copy is not marked as such: %+v", l)
	}
	// The restored copy carries the live database's own comment, not drconsole's mark.
	if rows := f.c.Query(t, "postgres", `SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = '`+f.db+`'`); rows[0][0] != "" {
		t.Errorf("live's comment after the swap: %q", rows[0][0])
	}
}

func mustLeftovers(t *testing.T, f *fixture) []Leftover {
	t.Helper()
	list, err := FindLeftovers(context.Background(), f.conn(t))
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// pg_restore gets what libpq needs and none of drconsole's secrets.
func TestRestoreToolSeesNoSecrets(t *testing.T) {
	f := newFixture(t)
	name := f.backupJob(t, "20240125_120000")
	tools, err := FindTools(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	// A pg_restore that writes down its environment and then does its job.
	bin := t.TempDir()
	envFile := filepath.Join(bin, "env")
	script := "#!/bin/sh\nenv > " + envFile + "\nexec " + tools.Restore + ` "$@"` + "\n"
	if err := os.WriteFile(filepath.Join(bin, "pg_restore"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DRCONSOLE_PASSPHRASE", "passphrase-secret")
	t.Setenv("DB_PASSWORD", "db-password-secret")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
	t.Setenv("PGDATABASE", f.db) // a stray one must never point the tool at live
	fake := *tools
	fake.Restore = filepath.Join(bin, "pg_restore")
	f.restoreInto(t, name, Options{Keys: f.keys(t), Tools: &fake, TestDB: f.db + "_envtest"})
	env, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"passphrase-secret", "db-password-secret", "aws-secret", "PGDATABASE=" + f.db + "\n"} {
		if strings.Contains(string(env), secret) {
			t.Errorf("pg_restore's environment holds %q", secret)
		}
	}
	if !strings.Contains(string(env), "PGPASSWORD=") || !strings.Contains(string(env), "LC_ALL=C") {
		t.Errorf("pg_restore's environment lacks what it needs:\n%s", env)
	}
}

// A key that does not open the backup is named: which key it needs, which the operator
// gave, and where to give the right one; a missing passphrase says which and how.
func TestKeyMessagesSayWhatIsNeeded(t *testing.T) {
	f := newFixture(t)
	name := f.backupJob(t, "20240125_120000")
	ctx := context.Background()
	hex16 := regexp.MustCompile(`encrypted to key [0-9A-F]{16}`)
	_, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t)})
	if !errors.Is(err, ErrNoKey) || !hex16.MatchString(err.Error()) || !strings.Contains(err.Error(), "--gpg-key FILE") {
		t.Errorf("no key: %v", err)
	}
	other, err := ReadKeyFile(newOtherKey(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: &Keys{Entities: other}})
	if !errors.Is(err, ErrNotRecipient) || !hex16.MatchString(err.Error()) || !strings.Contains(err.Error(), fmt.Sprintf("holds %016X", other[0].PrimaryKey.KeyId)) {
		t.Errorf("wrong key: %v", err)
	}
	f.pgDump(t, "raw.dump", "-Fc")
	sym := "spywatcher_full_20240126_000000.dump.gpg"
	gpgtest.EncryptSymmetric(t, "pw", f.path("raw.dump"), f.path(sym))
	_, err = Prepare(ctx, f.source(t, sym), Options{Conn: f.conn(t), Keys: &Keys{}})
	if !errors.Is(err, ErrNeedPassphrase) || !strings.Contains(err.Error(), "gpg --symmetric") || !strings.Contains(err.Error(), "--passphrase-file") {
		t.Errorf("symmetric without a passphrase: %v", err)
	}
}

// On another application's schema the runbook's checks verify nothing, and the result
// says so rather than looking clean.
func TestChecksOnAnotherSchemaSaySo(t *testing.T) {
	f := newFixture(t)
	other := f.c.NewDB(t)
	f.c.Exec(t, other, `CREATE TABLE orders (id int PRIMARY KEY)`)
	results := RunChecks(context.Background(), f.conn(t), other, "", shippedChecks())
	var summary *CheckResult
	for i, r := range results {
		if r.Name == "application checks" {
			summary = &results[i]
		} else if r.Status != CheckSkip && r.Status != CheckInfo {
			t.Errorf("%s: %s %s", r.Name, r.Status, r.Detail)
		}
	}
	if summary == nil || summary.Status != CheckWarn || !strings.Contains(summary.Detail, "nothing application-specific was verified") {
		t.Errorf("no warning that nothing was verified: %+v", results)
	}
	// On the application's own schema they run and pass.
	results = RunChecks(context.Background(), f.conn(t), f.db, "", shippedChecks())
	for _, r := range results {
		if r.Name == "application checks" || r.Status == CheckSkip || r.Status == CheckWarn {
			t.Errorf("on the application's schema: %s %s %s", r.Name, r.Status, r.Detail)
		}
	}
}

// A session in another database holding a lock on the live database (an open
// transaction that commented on it) is ended, not waited for: the swap does not leave
// production waiting on somebody's forgotten transaction.
func TestSwapEndsWhoeverHoldsALockOnLive(t *testing.T) {
	f := newFixture(t)
	name := f.backupJob(t, "20240125_120000")
	ctx := context.Background()
	plan, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: f.keys(t)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := plan.Restore(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	holder, err := pgx.Connect(ctx, f.c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	if _, err := holder.Exec(ctx, `BEGIN; COMMENT ON DATABASE "`+f.db+`" IS 'someone forgot to commit'`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sw, err := r.Swap(ctx, nil, SwapOptions{})
	if err != nil {
		t.Fatalf("swap with a lock held on live (after %s): %v", time.Since(start).Round(time.Millisecond), err)
	}
	if err := holder.Ping(ctx); err == nil {
		t.Error("the session holding a lock on live was not ended")
	}
	if got := fingerprint(t, f.c, f.db); got != f.print {
		t.Errorf("live after the swap:\n got %s\nwant %s", got, f.print)
	}
	// Its uncommitted comment died with it; the kept copy carries drconsole's mark.
	if l := findLeftover(mustLeftovers(t, f), sw.Kept); l == nil || l.Role != RoleKept {
		t.Errorf("kept copy: %+v", l)
	}
}
