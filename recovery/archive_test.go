package recovery

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"drconsole/internal/gpgtest"
	"drconsole/storage"
)

func TestReadArchiveOfRealDump(t *testing.T) {
	f := newFixture(t)
	name := f.pgDump(t, "a.dump", "-Fc")
	file, err := os.Open(f.path(name))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	a, err := ReadArchive(bufio.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	tools, err := FindTools(context.Background(), f.c.BinDir)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for _, tb := range a.Tables {
		tables = append(tables, tb.QualifiedName())
	}
	if a.Database != f.db || !strings.HasPrefix(a.DumpVersion, fmt.Sprint(tools.Major)) || !strings.HasPrefix(a.Version, "1.1") ||
		a.Encoding == "" || a.Compression != "gzip" || a.Created.IsZero() {
		t.Errorf("archive = %+v", a)
	}
	if got := strings.Join(tables, ","); got != "public.ApiKey,public.Guild,public.Session,public.User" {
		t.Errorf("tables = %s", got)
	}
	if strings.Join(a.Owners, ",") != "postgres" || strings.Join(a.Schemas, ",") != "public" {
		t.Errorf("owners %v schemas %v", a.Owners, a.Schemas)
	}
	if err := tools.CheckArchive(a); err != nil {
		t.Error(err)
	}
}

// craftArchive is the header of a custom archive of the given version with an empty
// table of contents.
func craftArchive(major, minor byte) []byte {
	var b bytes.Buffer
	b.WriteString("PGDMP")
	b.Write([]byte{major, minor, 0, 4, 8, 1})
	putInt := func(v int) { b.WriteByte(0); binary.Write(&b, binary.LittleEndian, uint32(v)) }
	putStr := func(s string) { putInt(len(s)); b.WriteString(s) }
	if minor >= 15 {
		b.WriteByte(1) // gzip
	} else {
		putInt(6)
	}
	for _, v := range []int{0, 0, 3, 25, 0, 124, 0} {
		putInt(v)
	}
	putStr("spywatcher")
	putStr("99.0")
	putStr("99.0")
	putInt(0)
	return b.Bytes()
}

func TestArchiveTooNewIsRefused(t *testing.T) {
	a, err := ReadArchive(bufio.NewReader(bytes.NewReader(craftArchive(1, 16))))
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != "1.16" || a.Database != "spywatcher" || a.DumpVersion != "99.0" {
		t.Errorf("archive = %+v", a)
	}
	err = (&Tools{Major: 15, Version: "pg_restore (PostgreSQL) 15.8"}).CheckArchive(a)
	if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "1.16") || strings.Contains(err.Error(), "\n") {
		t.Errorf("err = %v", err)
	}
	if err := (&Tools{Major: 17}).CheckArchive(a); err != nil {
		t.Errorf("17 reads 1.16: %v", err)
	}
	old, err := ReadArchive(bufio.NewReader(bytes.NewReader(craftArchive(1, 14))))
	if err != nil || (&Tools{Major: 15}).CheckArchive(old) != nil {
		t.Errorf("1.14 with 15: %v", err)
	}

	// And through Prepare, before any database is touched.
	f := newFixture(t)
	name := f.write(t, "spywatcher_full_20240101_000000.dump", craftArchive(1, 16))
	tools, err := FindTools(context.Background(), f.c.BinDir)
	if err != nil {
		t.Fatal(err)
	}
	tools.Major, tools.Version = 15, "pg_restore (PostgreSQL) 15.8"
	_, err = Prepare(context.Background(), f.source(t, name), Options{Conn: f.conn(t), Tools: tools})
	f.assertBad(t, err, ErrPreflight)
}

func TestFreeName(t *testing.T) {
	const suffix = "_restore_20261125_030000"
	none := map[string]bool{}
	if got := freeName("app", suffix, none); got != "app"+suffix {
		t.Errorf("short: %s", got)
	}
	long1, long2 := strings.Repeat("a", 60)+"one", strings.Repeat("a", 60)+"two"
	n1, n2 := freeName(long1, suffix, none), freeName(long2, suffix, none)
	if len(n1) > 63 || len(n2) > 63 || n1 == n2 || !strings.HasSuffix(n1, suffix) {
		t.Errorf("long names: %s %s", n1, n2)
	}
	utf := strings.Repeat("é", 40)
	if got := freeName(utf, suffix, none); len(got) > 63 || !utf8.ValidString(got) || !strings.HasPrefix(got, "éé") {
		t.Errorf("utf-8: %q (%d bytes)", got, len(got))
	}
	for _, base := range []string{"app", strings.Repeat("b", 36), strings.Repeat("c", 38), strings.Repeat("d", 39), strings.Repeat("e", 80), strings.Repeat("ü", 31)} {
		existing := map[string]bool{}
		for i := 0; i < 12; i++ {
			got := freeName(base, suffix, existing)
			if len(got) > 63 || existing[got] || !utf8.ValidString(got) {
				t.Fatalf("base %d bytes, %d taken: %q (%d bytes) collides or is too long", len(base), i, got, len(got))
			}
			existing[got] = true
		}
	}
}

func TestNearName(t *testing.T) {
	existing := map[string]bool{"spywatcher": true, "postgres": true, "template1": true, "billing": true}
	for name, want := range map[string]string{
		"spywatcer": "spywatcher", "spywatcherr": "spywatcher", "SpyWatcher": "spywatcher", "billnig": "billing",
		"postgre": "", "template2": "", "inventory": "", "spy": "",
	} {
		if got := nearName(name, existing); got != want {
			t.Errorf("nearName(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestGrantFromACL(t *testing.T) {
	for item, want := range map[string]string{
		"app=c/postgres":         `GRANT CONNECT ON DATABASE "db" TO "app"`,
		"=Tc/postgres":           `GRANT TEMPORARY, CONNECT ON DATABASE "db" TO PUBLIC`,
		`"my user"=CTc/postgres`: `GRANT CREATE, TEMPORARY, CONNECT ON DATABASE "db" TO "my user"`,
		`"we""ird=x"=c*/"o w"`:   `GRANT CONNECT ON DATABASE "db" TO "we""ird=x" WITH GRANT OPTION`,
		"ops=C*Tc*/postgres":     `GRANT TEMPORARY ON DATABASE "db" TO "ops"|GRANT CREATE, CONNECT ON DATABASE "db" TO "ops" WITH GRANT OPTION`,
		"postgres=CTc/postgres":  `GRANT CREATE, TEMPORARY, CONNECT ON DATABASE "db" TO "postgres"`,
		`"UpperCase"=c/postgres`: `GRANT CONNECT ON DATABASE "db" TO "UpperCase"`,
	} {
		got, err := grantFromACL(item, `"db"`)
		if err != nil || strings.Join(got, "|") != want {
			t.Errorf("grantFromACL(%s) = %q, %v\nwant %q", item, got, err, want)
		}
	}
	for _, bad := range []string{"", `"unterminated=c/x`, "noequals"} {
		if _, err := grantFromACL(bad, `"db"`); err == nil {
			t.Errorf("grantFromACL(%q) accepted", bad)
		}
	}
}

func TestResolveConnPrecedence(t *testing.T) {
	for _, k := range []string{"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE", "PGSERVICE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	all := map[string]string{
		"DB_HOST": "dbhost", "DB_PORT": "5433", "DB_USER": "dbuser", "DB_PASSWORD": "it's \\ secret", "DB_NAME": "dbname",
		"DATABASE_URL": "postgres://urluser:pw@urlhost:5434/urldb?sslmode=require",
	}
	c, err := ResolveConn("postgres://flag:pw@flaghost:5435/flagdb", env(all))
	if err != nil || c.Source != "--db-url" || c.Host != "flaghost" || c.Port != 5435 || c.Database != "flagdb" || c.User != "flag" {
		t.Errorf("--db-url: %+v %v", c, err)
	}
	c, err = ResolveConn("", env(all))
	if err != nil || c.Source != "DB_* variables" || c.Host != "dbhost" || c.Port != 5433 || c.User != "dbuser" || c.Password != `it's \ secret` || c.Database != "dbname" {
		t.Errorf("DB_*: %+v %v", c, err)
	}
	c, err = ResolveConn("", env(map[string]string{"DATABASE_URL": all["DATABASE_URL"]}))
	if err != nil || c.Source != "DATABASE_URL" || c.Host != "urlhost" || c.Database != "urldb" || c.SSLMode != "require" {
		t.Errorf("DATABASE_URL: %+v %v", c, err)
	}
	// No database named anywhere: empty, never libpq's default of the user's name.
	for _, tc := range []struct {
		url string
		env map[string]string
	}{
		{"postgres://u:pw@h:5432/", nil},
		{"postgres://u:pw@h:5432", nil},
		{"", map[string]string{"DB_HOST": "h", "DB_USER": "u"}},
		{"", map[string]string{"DATABASE_URL": "postgresql://u@h"}},
	} {
		c, err := ResolveConn(tc.url, env(tc.env))
		if err != nil || c.Database != "" {
			t.Errorf("%q %v: database %q, err %v", tc.url, tc.env, c.Database, err)
		}
	}
	if c, err := ResolveConn("postgres://u:pw@h:5432/?dbname=q", env(nil)); err != nil || c.Database != "q" {
		t.Errorf("dbname parameter: %+v %v", c, err)
	}

	t.Setenv("PGHOST", "pghost")
	t.Setenv("PGPORT", "5436")
	t.Setenv("PGUSER", "pguser")
	c, err = ResolveConn("", os.Getenv)
	if err != nil || c.Source != "PG* variables" || c.Host != "pghost" || c.Port != 5436 || c.User != "pguser" || c.Database != "" {
		t.Errorf("PG* without PGDATABASE: %+v %v", c, err)
	}
	t.Setenv("PGDATABASE", "pgdb")
	if c, err = ResolveConn("", os.Getenv); err != nil || c.Database != "pgdb" {
		t.Errorf("PGDATABASE: %+v %v", c, err)
	}
}

func TestRedactErr(t *testing.T) {
	for _, msg := range []string{
		`cannot parse "postgres://user:s3cret@host:bad/db": invalid port`,
		"cannot parse `host=h password=s3cret user=u`: failed",
		"password=s3cret",
	} {
		got := redactErr(errors.New(msg))
		if strings.Contains(got, "s3cret") || !strings.Contains(got, "xxxxx") {
			t.Errorf("redactErr(%q) = %q", msg, got)
		}
	}
	if got := redactErr(errors.New("plain failure")); got != "plain failure" {
		t.Errorf("redactErr changed a message without secrets: %q", got)
	}
	for _, url := range []string{"postgres://u:s3cret@host:notaport/db", "postgres://u:s3cret@[bad/db"} {
		if _, err := ResolveConn(url, func(string) string { return "" }); err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ResolveConn(%q) error = %v", url, err)
		}
	}
}

func TestSniffEveryLayer(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "x.sql")
	os.WriteFile(plain, []byte("--\n-- PostgreSQL database dump\n--\nSET statement_timeout = 0;\n"), 0o600)
	sh(t, nil, `cd "`+dir+`" && gzip -k x.sql && zstd -q -k x.sql`)
	key := gpgtest.NewKey(t, "Sniff", "")
	key.Encrypt(t, plain, filepath.Join(dir, "x.sql.gpg"))
	gpgtest.EncryptSymmetric(t, "pw", plain, filepath.Join(dir, "x.sql.sym.gpg"))
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		head []byte
		want storage.Layer
	}{
		{"sql", read("x.sql"), storage.LayerSQL},
		{"gzip", read("x.sql.gz"), storage.LayerGzip},
		{"zstd", read("x.sql.zst"), storage.LayerZstd},
		{"openpgp public-key", read("x.sql.gpg"), storage.LayerOpenPGP},
		{"openpgp symmetric", read("x.sql.sym.gpg"), storage.LayerOpenPGP},
		{"armored", []byte("-----BEGIN PGP MESSAGE-----\n\nhQ"), storage.LayerOpenPGP},
		{"custom", craftArchive(1, 14), storage.LayerCustom},
		{"empty", nil, storage.LayerEmpty},
		{"random", randomBytes(512), storage.LayerUnknown},
		{"notes", []byte("just some notes\n"), storage.LayerUnknown},
		{"nul", []byte("SET x\x00"), storage.LayerUnknown},
	} {
		head := tc.head[:min(len(tc.head), storage.SniffLen)]
		if got := storage.Sniff(head); got != tc.want {
			t.Errorf("%s: Sniff = %s, want %s", tc.name, got, tc.want)
		}
	}
}

// framing tells a file cut short from a damaged one, wherever the cut falls.
func TestFramingTruncated(t *testing.T) {
	dir := t.TempDir()
	noise := make([]byte, 150<<10)
	rand.Read(noise)
	data := []byte("--\n-- PostgreSQL database dump\n--\nSELECT '" + hex.EncodeToString(noise) + "';\n")
	os.WriteFile(filepath.Join(dir, "in"), data, 0o600)
	key := gpgtest.NewKey(t, "Framing", "")
	key.Encrypt(t, filepath.Join(dir, "in"), filepath.Join(dir, "in.gpg"))
	gpgtest.EncryptSymmetric(t, "pw", filepath.Join(dir, "in"), filepath.Join(dir, "in.sym.gpg"))
	for _, file := range []string{"in.gpg", "in.sym.gpg"} {
		enc, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		frame := func(b []byte) *framing {
			fr := newFraming(bytes.NewReader(b))
			io.Copy(io.Discard, iotestHalf{fr})
			return fr
		}
		if frame(enc).truncated() {
			t.Errorf("%s: the whole file reads as truncated", file)
		}
		for _, cut := range []int{2, 5, 40, len(enc) / 3, len(enc) / 2, len(enc) - 100, len(enc) - 2, len(enc) - 1} {
			if !frame(enc[:cut]).truncated() {
				t.Errorf("%s cut at %d of %d: not seen as truncated", file, cut, len(enc))
			}
		}
		// And through the decrypting stage, as a restore sees it.
		keys := &Keys{Passphrase: []byte("pw")}
		if ents, err := ReadKeyFile(key.SecretFile); err == nil {
			keys.Entities = ents
		}
		for _, cut := range []int{len(enc) / 2, len(enc) - 1} {
			st, err := Unwrap(bytes.NewReader(enc[:cut]), keys)
			if err == nil {
				_, err = io.Copy(io.Discard, st.Reader)
				st.Close()
			}
			if !errors.Is(err, ErrTruncated) {
				t.Errorf("%s cut at %d: err = %v, want ErrTruncated", file, cut, err)
			}
		}
	}
}

// iotestHalf reads in small, odd-sized pieces so framing sees headers split across reads.
type iotestHalf struct{ r io.Reader }

func (h iotestHalf) Read(p []byte) (int, error) { return h.r.Read(p[:min(len(p), 777)]) }

// Verify counts each table's rows in the archive as it walks the data blocks: the figures
// a restore's row accounting holds the copy to.
func TestVerifyCountsRows(t *testing.T) {
	f := newFixture(t)
	good := f.backupJob(t, "20240125_120000")
	c, err := Verify(context.Background(), f.source(t, good), f.keys(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range c.Rows {
		got = append(got, fmt.Sprintf("%s %d %d %d", r.Name, r.Archive, r.Restored, r.Live))
	}
	want := "public.ApiKey 300 -1 -1,public.Guild 120 -1 -1,public.Session 1 -1 -1,public.User 500 -1 -1"
	if strings.Join(got, ",") != want {
		t.Errorf("rows = %q\nwant %q", got, want)
	}
}

// A gpg message whose data ends exactly on a partial-length chunk's boundary ends with an
// empty final chunk: a single 0 byte. Cut before it, every byte of data and the MDC are
// still there and go-crypto takes the message as whole (it was 1 run in ~120 of
// TestFramingTruncated with random data); the file is still not what was written.
func TestEncryptedCutBeforeItsEmptyLastChunk(t *testing.T) {
	dir := t.TempDir()
	noise := make([]byte, 4<<10)
	rand.Read(noise)
	os.WriteFile(filepath.Join(dir, "in"), []byte("--\n-- PostgreSQL database dump\n--\nSELECT '"+hex.EncodeToString(noise)+"';\n"), 0o600)
	key := gpgtest.NewKey(t, "Chunks", "")
	key.Encrypt(t, filepath.Join(dir, "in"), filepath.Join(dir, "in.gpg"))
	enc, err := os.ReadFile(filepath.Join(dir, "in.gpg"))
	if err != nil {
		t.Fatal(err)
	}
	keys := &Keys{}
	if keys.Entities, err = ReadKeyFile(key.SecretFile); err != nil {
		t.Fatal(err)
	}
	whole := reframeEndingEmpty(t, enc)
	if whole[len(whole)-1] != 0 {
		t.Fatal("the reframed message does not end with an empty chunk")
	}
	read := func(b []byte) error {
		st, err := Unwrap(bytes.NewReader(b), keys)
		if err == nil {
			_, err = io.Copy(io.Discard, st.Reader)
			st.Close()
		}
		return err
	}
	if err := read(whole); err != nil {
		t.Fatalf("the reframed message does not read: %v", err)
	}
	if err := read(whole[:len(whole)-1]); !errors.Is(err, ErrTruncated) {
		t.Fatalf("cut before its empty last chunk: err = %v, want ErrTruncated", err)
	}
}

// reframeEndingEmpty rewrites gpg's output (packets before the encrypted data, then the
// encrypted data packet) so that the encrypted data is sent in power-of-two partial
// chunks (the first of 512 bytes) and an empty final chunk. The content is unchanged.
func reframeEndingEmpty(t *testing.T, enc []byte) []byte {
	t.Helper()
	var out []byte
	for len(enc) > 0 {
		tag := enc[0]
		if tag&0x40 == 0 { // old format: only the packets before the data, with lengths
			n := 0
			switch tag & 3 {
			case 0:
				n = int(enc[1]) + 2
			case 1:
				n = int(enc[1])<<8 | int(enc[2]) + 3
			default:
				t.Fatalf("old-format length type %d", tag&3)
			}
			out, enc = append(out, enc[:n]...), enc[n:]
			continue
		}
		if tag&0x3f != 18 { // not the encrypted data packet
			t.Fatalf("unexpected packet tag %d", tag&0x3f)
		}
		var body []byte
		rest := enc[1:]
		for {
			l0 := int(rest[0])
			var n, hl int
			partial := false
			switch {
			case l0 < 192:
				n, hl = l0, 1
			case l0 < 224:
				n, hl = (l0-192)<<8+int(rest[1])+192, 2
			case l0 < 255:
				n, hl, partial = 1<<(l0&0x1f), 1, true
			default:
				n, hl = int(rest[1])<<24|int(rest[2])<<16|int(rest[3])<<8|int(rest[4]), 5
			}
			body, rest = append(body, rest[hl:hl+n]...), rest[hl+n:]
			if !partial {
				break
			}
		}
		if len(body) < 512 {
			t.Fatalf("encrypted data of %d bytes: too short to reframe", len(body))
		}
		out = append(out, tag, 0xe0|9)
		out, body = append(out, body[:512]...), body[512:]
		for bit := 30; bit >= 0; bit-- {
			if len(body)&(1<<bit) != 0 {
				out = append(out, 0xe0|byte(bit))
				out, body = append(out, body[:1<<bit]...), body[1<<bit:]
			}
		}
		out = append(out, 0) // the empty final chunk
		enc = rest
	}
	return out
}
