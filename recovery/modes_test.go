package recovery

import (
	"context"
	"strings"
	"testing"

	"drconsole/internal/gpgtest"
	"drconsole/storage"
)

// A plain SQL dump, gzipped and encrypted, goes through psql; it does not name its
// database, so the connection names the target.
func TestRestorePlainSQLGzipGPG(t *testing.T) {
	f := newFixture(t)
	f.pgDump(t, "plain.sql", "-Fp")
	run(t, nil, "gzip", f.path("plain.sql"))
	name := "spywatcher_full_20240125_120000.sql.gz.gpg"
	f.key_(t).Encrypt(t, f.path("plain.sql.gz"), f.path(name))
	r := f.restoreInto(t, name, Options{Keys: f.keys(t)})
	if r.Plan.Contents.Format != storage.FormatPlain || r.Plan.Contents.Archive != nil {
		t.Errorf("format = %s, archive %v; want plain SQL", r.Plan.Contents.Format, r.Plan.Contents.Archive)
	}
	if r.Tables < 4 {
		t.Errorf("psql loaded %d tables, want 4", r.Tables)
	}
}

func TestRestoreSymmetricEncryption(t *testing.T) {
	f := newFixture(t)
	f.pgDump(t, "raw.dump", "-Fc")
	run(t, nil, "gzip", f.path("raw.dump"))
	name := "spywatcher_full_20240125_120000.dump.gz.gpg"
	gpgtest.EncryptSymmetric(t, "correct horse", f.path("raw.dump.gz"), f.path(name))

	t.Run("passphrase", func(t *testing.T) {
		f.restoreInto(t, name, Options{Keys: &Keys{Passphrase: []byte("correct horse")}})
	})
	t.Run("asked once", func(t *testing.T) {
		asked := 0
		keys := &Keys{Ask: func(prompt string) ([]byte, error) {
			asked++
			return []byte("correct horse"), nil
		}}
		f.restoreInto(t, name, Options{Keys: keys})
		if asked != 1 {
			t.Errorf("Ask called %d times, want 1", asked)
		}
	})
	t.Run("wrong passphrase", func(t *testing.T) {
		err := restoreAll(t, f.source(t, name), Options{Conn: f.conn(t), Keys: &Keys{Passphrase: []byte("wrong horse")}})
		f.assertBad(t, err, ErrWrongKey)
	})
	t.Run("wrong passphrase asked", func(t *testing.T) {
		asked := 0
		keys := &Keys{Ask: func(string) ([]byte, error) { asked++; return []byte("nope"), nil }}
		err := restoreAll(t, f.source(t, name), Options{Conn: f.conn(t), Keys: keys})
		f.assertBad(t, err, ErrWrongKey)
		if asked != 1 {
			t.Errorf("Ask called %d times, want 1", asked)
		}
	})
	t.Run("no passphrase", func(t *testing.T) {
		err := restoreAll(t, f.source(t, name), Options{Conn: f.conn(t)})
		f.assertBad(t, err, ErrNoKey)
		err = restoreAll(t, f.source(t, name), Options{Conn: f.conn(t), Keys: &Keys{}})
		f.assertBad(t, err, ErrNoKey)
	})
}

func TestRestoreWithPassphraseProtectedKey(t *testing.T) {
	f := newFixture(t)
	f.key = gpgtest.NewKey(t, "Protected Job", "key pw")
	name := f.backupJob(t, "20240125_120000")
	for _, file := range []struct{ name, path string }{{"armored", f.key.SecretFile}, {"binary", f.key.SecretFileBinary}} {
		ents, err := ReadKeyFile(file.path)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(file.name, func(t *testing.T) {
			f.restoreInto(t, name, Options{Keys: &Keys{Entities: ents, Passphrase: []byte("key pw")}})
		})
		t.Run(file.name+" wrong passphrase", func(t *testing.T) {
			ents, _ := ReadKeyFile(file.path) // fresh: the last run unlocked the keys in place
			err := restoreAll(t, f.source(t, name), Options{Conn: f.conn(t), Keys: &Keys{Entities: ents, Passphrase: []byte("not it")}})
			f.assertBad(t, err, ErrWrongKey)
		})
		t.Run(file.name+" no passphrase", func(t *testing.T) {
			ents, _ := ReadKeyFile(file.path)
			err := restoreAll(t, f.source(t, name), Options{Conn: f.conn(t), Keys: &Keys{Entities: ents}})
			f.assertBad(t, err, ErrNoKey)
		})
	}
}

// Unencrypted and differently compressed backups are recognised by their content.
func TestRestoreUnencryptedLayers(t *testing.T) {
	f := newFixture(t)
	f.pgDump(t, "spywatcher_full_20240101_000000.dump", "-Fc")
	sh(t, nil, `cd "`+f.dir+`" && gzip -k spywatcher_full_20240101_000000.dump && zstd -q -k spywatcher_full_20240101_000000.dump &&
		cp spywatcher_full_20240101_000000.dump spywatcher_full_20240102_000000.sql.gz`)
	for _, tc := range []struct {
		name   string
		layers []storage.Layer
	}{
		{"spywatcher_full_20240101_000000.dump", []storage.Layer{storage.LayerCustom}},
		{"spywatcher_full_20240101_000000.dump.gz", []storage.Layer{storage.LayerGzip, storage.LayerCustom}},
		{"spywatcher_full_20240101_000000.dump.zst", []storage.Layer{storage.LayerZstd, storage.LayerCustom}},
		{"spywatcher_full_20240102_000000.sql.gz", []storage.Layer{storage.LayerCustom}}, // misnamed
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.restoreInto(t, tc.name, Options{})
			if got := r.Plan.Contents.Layers; !equalLayers(got, tc.layers) {
				t.Errorf("layers = %v, want %v", got, tc.layers)
			}
			if r.Tables != 4 {
				t.Errorf("tables loaded = %d, want 4", r.Tables)
			}
		})
	}
}

func equalLayers(a, b []storage.Layer) bool {
	return strings.Join(layerStrings(a), ",") == strings.Join(layerStrings(b), ",")
}

func layerStrings(ls []storage.Layer) []string {
	var out []string
	for _, l := range ls {
		out = append(out, string(l))
	}
	return out
}

func TestRestoreWithoutPgRestore(t *testing.T) {
	f := newFixture(t)
	name := f.pgDump(t, "spywatcher_full_20240101_000000.dump", "-Fc")
	t.Setenv("DRCONSOLE_PG_BINDIR", t.TempDir())
	err := restoreAll(t, f.source(t, name), Options{Conn: f.conn(t)})
	f.assertBad(t, err, ErrPreflight)
	if !strings.Contains(err.Error(), "pg_restore not found") {
		t.Errorf("error does not say pg_restore is missing: %v", err)
	}
}

// A fresh DR host: the target does not exist, the scratch database takes its name.
func TestRestoreCreatesMissingDatabase(t *testing.T) {
	f := newFixture(t)
	name := f.backupJob(t, "20240125_120000")
	ctx := context.Background()
	target := "freshhost_" + strings.ReplaceAll(f.db, "_", "")
	t.Cleanup(func() {
		for _, d := range f.databasesLike(t, target) {
			f.c.Exec(t, "postgres", `DROP DATABASE "`+d+`" WITH (FORCE)`)
		}
	})
	plan, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t).With(target), Keys: f.keys(t), FromDB: f.db})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Mode != ModeCreate || plan.Kept != "" || !strings.Contains(plan.Scratch, "_restore_") || len(plan.Scratch) > 63 {
		t.Fatalf("plan: mode %s scratch %s kept %q", plan.Mode, plan.Scratch, plan.Kept)
	}
	r, err := plan.Restore(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := r.Swap(ctx, nil, SwapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sw.Live != target || sw.Kept != "" {
		t.Errorf("swapped = %+v", sw)
	}
	if got := fingerprint(t, f.c, target); got != f.print {
		t.Errorf("created database differs:\n got %s\nwant %s", got, f.print)
	}
	if contains(f.c.Databases(t), plan.Scratch) {
		t.Errorf("scratch %s left behind", plan.Scratch)
	}
	f.assertUntouched(t, f.print)

	// One edit away from an existing database is a typo, not a new database.
	for _, typo := range []string{f.db[1:], f.db + "x", strings.ToUpper(f.db[:1]) + f.db[1:len(f.db)-1] + "9"} {
		_, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t).With(typo), Keys: f.keys(t)})
		f.assertBad(t, err, ErrDatabase)
		if !strings.Contains(err.Error(), "did you mean") {
			t.Errorf("%s: error does not suggest the near name: %v", typo, err)
		}
		if contains(f.c.Databases(t), typo) {
			t.Errorf("database %s was created", typo)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// The monthly restore test: into a new database of the operator's naming, no swap.
func TestRestoreIntoTestDatabase(t *testing.T) {
	f := newFixture(t)
	name := f.backupJob(t, "20240125_120000")
	ctx := context.Background()
	testDB := f.db + "_monthly"
	plan, err := Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: f.keys(t), TestDB: testDB})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Mode != ModeTest || plan.Scratch != testDB || plan.Target != testDB {
		t.Fatalf("plan: mode %s target %s scratch %s", plan.Mode, plan.Target, plan.Scratch)
	}
	r, err := plan.Restore(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if failed := Failed(r.Checks); len(failed) > 0 || len(r.Checks) == 0 {
		t.Errorf("checks: %+v", r.Checks)
	}
	if got := fingerprint(t, f.c, testDB); got != f.print {
		t.Errorf("test database differs:\n got %s\nwant %s", got, f.print)
	}
	if _, err := r.Swap(ctx, nil, SwapOptions{}); err == nil {
		t.Error("a test restore was swapped")
	}
	if err := r.Abandon(ctx); err != nil || !contains(f.c.Databases(t), testDB) {
		t.Errorf("Abandon dropped the test database the operator asked for (err %v)", err)
	}
	f.assertUntouched(t, f.print)

	_, err = Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: f.keys(t), TestDB: testDB})
	f.assertBad(t, err, ErrPreflight)
	_, err = Prepare(ctx, f.source(t, name), Options{Conn: f.conn(t), Keys: f.keys(t), TestDB: f.db})
	f.assertBad(t, err, ErrPreflight)
	if err := r.Drop(ctx); err != nil || contains(f.c.Databases(t), testDB) {
		t.Errorf("Drop left %s (err %v)", testDB, err)
	}
}

// With no database named anywhere, a custom archive's own database is the target; a
// plain dump names none, so it is refused.
func TestTargetFromArchive(t *testing.T) {
	f := newFixture(t)
	custom := f.pgDump(t, "spywatcher_full_20240101_000000.dump", "-Fc")
	plain := f.pgDump(t, "spywatcher_full_20240101_000000.sql", "-Fp")
	conn, err := ResolveConn(strings.TrimSuffix(f.c.URL(f.db), "/"+f.db+"?sslmode=disable")+"/?sslmode=disable", func(string) string { return "" })
	if err != nil || conn.Database != "" {
		t.Fatalf("conn %+v %v", conn, err)
	}
	plan, err := Prepare(context.Background(), f.source(t, custom), Options{Conn: conn})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Target != f.db || plan.Mode != ModeSwap {
		t.Errorf("target %s mode %s, want %s swap", plan.Target, plan.Mode, f.db)
	}
	plan.Release()
	_, err = Prepare(context.Background(), f.source(t, plain), Options{Conn: conn})
	f.assertBad(t, err, ErrPreflight)
}
