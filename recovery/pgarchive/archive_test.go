package pgarchive_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"

	"drconsole/internal/pgtest"
	"drconsole/recovery/pgarchive"
)

// archive writes a custom-format archive the way pg_dump does (pg_backup_custom.c), for
// tests that need one this pg_dump cannot make: other versions and compressions, damage.
type archive struct {
	b       bytes.Buffer
	minor   byte
	compr   string
	entries []entry
}

type entry struct {
	id       int
	desc     string
	tag      string
	copyStmt string
	deps     []int
	data     []byte            // TABLE DATA
	blobs    map[uint32][]byte // BLOBS
}

func (a *archive) int(v int) {
	if v < 0 {
		a.b.WriteByte(1)
		v = -v
	} else {
		a.b.WriteByte(0)
	}
	binary.Write(&a.b, binary.LittleEndian, uint32(v))
}

func (a *archive) str(s string) { a.int(len(s)); a.b.WriteString(s) }

func (a *archive) compress(t testing.TB, data []byte) []byte {
	var out bytes.Buffer
	switch a.compr {
	case "none":
		return data
	case "gzip":
		w := zlib.NewWriter(&out)
		w.Write(data)
		w.Close()
	case "zstd":
		w, _ := zstd.NewWriter(&out)
		w.Write(data)
		w.Close()
	default:
		t.Fatalf("compression %s", a.compr)
	}
	return out.Bytes()
}

// chunks writes data as pg_dump does: length-prefixed chunks, then a zero length.
func (a *archive) chunks(data []byte) {
	for len(data) > 0 {
		n := min(len(data), 1000)
		a.int(n)
		a.b.Write(data[:n])
		data = data[n:]
	}
	a.int(0)
}

func (a *archive) bytes(t testing.TB) []byte {
	a.b.Reset()
	a.b.WriteString("PGDMP")
	a.b.Write([]byte{1, a.minor, 0, 4, 8, 1})
	if a.minor >= 15 {
		a.b.WriteByte(map[string]byte{"none": 0, "gzip": 1, "lz4": 2, "zstd": 3}[a.compr])
	} else if a.compr == "gzip" {
		a.int(-1)
	} else {
		a.int(0)
	}
	for _, v := range []int{0, 0, 3, 25, 0, 124, 0} {
		a.int(v)
	}
	a.str("app")
	a.str("15.0")
	a.str("15.0")
	a.int(len(a.entries))
	for _, e := range a.entries {
		a.int(e.id)
		had := 0
		if e.data != nil || e.blobs != nil {
			had = 1
		}
		a.int(had)
		a.str("0")
		a.str("0")
		a.str(e.tag)
		a.str(e.desc)
		section := 2
		if had == 1 {
			section = 3
		}
		a.int(section)
		a.str("")         // defn
		a.str("")         // dropStmt
		a.str(e.copyStmt) // copyStmt
		a.str("public")   // namespace
		a.str("")         // tablespace
		if a.minor >= 14 {
			a.str("") // tableam
		}
		if a.minor >= 16 {
			a.int(int('r'))
		}
		a.str("postgres")
		a.str("false")
		for _, d := range e.deps {
			a.str(strconv.Itoa(d))
		}
		a.int(-1)
		state := byte(3)
		if had == 1 {
			state = 1
		}
		a.b.WriteByte(state)
		a.b.Write(make([]byte, 8))
	}
	for _, e := range a.entries {
		switch {
		case e.data != nil:
			a.b.WriteByte(1)
			a.int(e.id)
			a.chunks(a.compress(t, e.data))
		case e.blobs != nil:
			a.b.WriteByte(3)
			a.int(e.id)
			for oid, data := range e.blobs {
				a.int(int(int32(oid)))
				a.chunks(a.compress(t, data))
			}
			a.int(0)
		}
	}
	return append([]byte(nil), a.b.Bytes()...)
}

func sample(minor byte, compr string) *archive {
	return &archive{minor: minor, compr: compr, entries: []entry{
		{id: 1, desc: "TABLE", tag: "t"},
		{id: 2, desc: "TABLE DATA", tag: "t", copyStmt: "COPY public.t (a, \"B c\") FROM stdin;\n", deps: []int{1},
			data: []byte("1\tx\n2\t\\\\.\n3\ty\\nz\n\\.\n\n\n")},
		{id: 3, desc: "TABLE", tag: "empty"},
		{id: 4, desc: "TABLE DATA", tag: "empty", copyStmt: "COPY public.empty (a) FROM stdin;\n", deps: []int{3}, data: []byte("\\.\n\n\n")},
		{id: 5, desc: "BLOBS", tag: "BLOBS", blobs: map[uint32][]byte{3_000_000_000: []byte("big oid")}},
	}}
}

func read(t *testing.T, b []byte) (*pgarchive.Archive, map[int]int64, error) {
	t.Helper()
	br := bufio.NewReader(iotest.HalfReader(bytes.NewReader(b)))
	a, err := pgarchive.ReadTOC(br, true)
	if err != nil {
		return a, nil, err
	}
	blocks := a.Blocks(br)
	defer blocks.Close()
	rows, err := blocks.CountRows()
	return a, rows, err
}

func TestReadEveryCompression(t *testing.T) {
	for _, tc := range []struct {
		minor byte
		compr string
	}{{14, "none"}, {14, "gzip"}, {15, "none"}, {15, "gzip"}, {15, "zstd"}, {16, "gzip"}} {
		t.Run(tc.compr+" 1."+strconv.Itoa(int(tc.minor)), func(t *testing.T) {
			b := sample(tc.minor, tc.compr).bytes(t)
			a, rows, err := read(t, b)
			if err != nil {
				t.Fatal(err)
			}
			if a.Compression != tc.compr || a.Version.Minor != tc.minor || len(a.Entries) != 5 || a.Database != "app" {
				t.Errorf("archive = %+v", a)
			}
			if !bytes.HasPrefix(b, a.Raw) || b[len(a.Raw)] != 1 {
				t.Errorf("Raw is not the archive up to its first data block (%d bytes)", len(a.Raw))
			}
			if rows[2] != 3 || rows[4] != 0 {
				t.Errorf("rows = %v, want 3 and 0", rows)
			}
			if a.Entry(2).Deps[0] != 1 || a.Entry(5).Desc != "BLOBS" || !a.Entry(2).HadDumper || a.Entry(1).HadDumper {
				t.Errorf("entries: %+v %+v", a.Entry(2), a.Entry(5))
			}
		})
	}
}

func TestBlocksAndBlobs(t *testing.T) {
	b := sample(14, "gzip").bytes(t)
	br := bufio.NewReader(bytes.NewReader(b))
	a, err := pgarchive.ReadTOC(br, false)
	if err != nil {
		t.Fatal(err)
	}
	blocks := a.Blocks(br)
	var got []string
	for {
		blk, err := blocks.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !blk.Blobs {
			// Read only a little: Next must skip the rest.
			p := make([]byte, 3)
			n, _ := blocks.Read(p)
			got = append(got, blk.Entry.Tag+":"+string(p[:n]))
			continue
		}
		for {
			oid, err := blocks.NextBlob()
			if err == io.EOF {
				break
			}
			data, err := io.ReadAll(blocks)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, strconv.FormatUint(uint64(oid), 10)+":"+string(data))
		}
	}
	if strings.Join(got, ",") != "t:1\tx,empty:\\.\n,3000000000:big oid" || blocks.Count() != 3 {
		t.Errorf("blocks = %q (%d)", got, blocks.Count())
	}
}

func TestDamagedArchives(t *testing.T) {
	good := sample(14, "gzip").bytes(t)
	a, _, err := read(t, good)
	if err != nil {
		t.Fatal(err)
	}
	toc := len(a.Raw)
	// Where the first block's compressed data is: past its type, ID and first length.
	firstData := toc + 1 + 5 + 5
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, pgarchive.ErrNotArchive},
		{"not an archive", []byte("PGDMQ and more"), pgarchive.ErrNotArchive},
		{"cut in the header", good[:20], pgarchive.ErrTruncated},
		{"cut in the TOC", good[:toc-3], pgarchive.ErrTruncated},
		{"cut in a data block", good[:firstData+4], pgarchive.ErrTruncated},
		{"cut before the last block", good[:bytes.LastIndex(good, []byte{3, 0, 5, 0, 0, 0})], pgarchive.ErrTruncated},
		{"cut by one byte", good[:len(good)-1], pgarchive.ErrTruncated},
		{"flipped in compressed data", flip(good, firstData+6), pgarchive.ErrCorrupt},
		{"unknown block type", flip(good, toc), pgarchive.ErrCorrupt},
		{"block of no entry", append(append([]byte(nil), good...), 1, 0, 99, 0, 0, 0, 0, 0, 0, 0), pgarchive.ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := read(t, tc.data)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("more than one line: %q", err)
			}
		})
	}
}

func flip(b []byte, at int) []byte {
	c := append([]byte(nil), b...)
	c[at] ^= 0xff
	return c
}

// An error of the stream underneath (a decryption layer's, a cancel) comes out as it
// is, not as damage to the archive, whether it falls in the TOC or in compressed data.
func TestStreamErrorsPassThrough(t *testing.T) {
	good := sample(14, "gzip").bytes(t)
	mine := errors.New("the layer underneath failed")
	for _, at := range []int{30, len(good) / 2, len(good) - 3} {
		r := io.MultiReader(bytes.NewReader(good[:at]), iotest.ErrReader(mine))
		br := bufio.NewReader(r)
		a, err := pgarchive.ReadTOC(br, false)
		if err == nil {
			_, err = a.Blocks(br).CountRows()
		}
		if !errors.Is(err, mine) {
			t.Errorf("cut at %d: err = %v", at, err)
		}
	}
}

func TestLZ4IsSkippedNotCounted(t *testing.T) {
	arch := sample(15, "none")
	b := arch.bytes(t)
	b[5+3+3] = 2 // the header's compression: lz4, the blocks' bytes are whatever they are
	a, rows, err := read(t, b)
	if err != nil || a.Compression != "lz4" || rows[2] != -1 || rows[4] != -1 {
		t.Errorf("lz4: rows %v, err %v", rows, err)
	}
}

func TestRows(t *testing.T) {
	for data, want := range map[string]int64{
		"":                      0,
		"\\.\n\n\n":             0,
		"\\.\n":                 0,
		"a\n":                   1,
		"a":                     1,
		"a\nb\n\\.\n\n\n":       2,
		"a\nb\n\\.\n":           2,
		"\\\\.\n\\.\n\n\n":      1, // a row holding "\." is written escaped
		"x\\.\n\\.\n\n\n":       1,
		"\n\n":                  2, // two rows of one empty text column
		"long row 1234567\nb\n": 2,
	} {
		if got := pgarchive.Rows([]byte(data)); got != want {
			t.Errorf("Rows(%q) = %d, want %d", data, got, want)
		}
		// The same written a byte at a time.
		var c pgarchive.RowCounter
		for i := range len(data) {
			c.Write([]byte{data[i]})
		}
		if got := c.Rows(); got != want {
			t.Errorf("RowCounter(%q) byte by byte = %d, want %d", data, got, want)
		}
	}
}

func TestParseCopy(t *testing.T) {
	for stmt, want := range map[string]string{
		"COPY public.t (a, b) FROM stdin;\n":                           `COPY "public"."t" ("a", "b") FROM stdin`,
		"COPY \"My Schema\".\"T\"\"x\" (\"a b\", c1) FROM stdin;\n":    `COPY "My Schema"."T""x" ("a b", "c1") FROM stdin`,
		"COPY public.nocols  FROM stdin;\n":                            `COPY "public"."nocols" FROM stdin`,
		"COPY public.t (a) FROM stdin;\nDROP DATABASE x;\n":            "",
		"COPY public.t (a) TO PROGRAM 'x';\n":                          "",
		"INSERT INTO public.t VALUES (1);\n":                           "",
		"":                                                             "",
		"COPY public.t (a, b) FROM stdin WITH (FORMAT csv);\n":         "",
		"COPY public.t (A) FROM stdin;\n":                              "",
		"COPY public.t (a;) FROM stdin;\n":                             "",
		"COPY public.\"unterminated (a) FROM stdin;\n":                 "",
		"COPY public.t (a, \"\") FROM stdin;\n":                        "",
		"COPY public.t (a) FROM stdin; COPY public.u FROM stdin;\n":    "",
		"COPY public.t (a, b) FROM stdin;":                             `COPY "public"."t" ("a", "b") FROM stdin`,
		"COPY public.t (\"a\"\"; DROP TABLE x; --\") FROM stdin;\n":    `COPY "public"."t" ("a""; DROP TABLE x; --") FROM stdin`,
		"COPY public.t_2 (\"é\", x_1) FROM stdin;\n":                   `COPY "public"."t_2" ("é", "x_1") FROM stdin`,
		"COPY public.t_2 (é) FROM stdin;\n":                            "",
		"COPY public.t (a) FROM stdin;\n\n":                            "",
		"COPY public.t (a) FROM stdin;\n -- and more":                  "",
		"COPY public.t(a) FROM stdin;\n":                               `COPY "public"."t" ("a") FROM stdin`,
		"COPY t (a) FROM stdin;\n":                                     `COPY "t" ("a") FROM stdin`,
		"COPY public.t (a) FROM STDIN;\n":                              "",
		"COPY public.t (a) FROM stdin ;\n":                             "",
		"COPY  public.t (a) FROM stdin;\n":                             "",
		"COPY public. t (a) FROM stdin;\n":                             "",
		"COPY public.t (a,b) FROM stdin;\n":                            "",
		"COPY public.t ( a) FROM stdin;\n":                             `COPY "public"."t" ("a") FROM stdin`,
		"COPY public.t (a) FROM stdin;\r\n":                            "",
		"COPY public.t (\"a\nb\") FROM stdin;\n":                       `COPY "public"."t" ("a` + "\n" + `b") FROM stdin`,
		"COPY public.t (a) FROM stdin;\x00":                            "",
		"COPY pg_catalog.pg_authid (rolname) FROM stdin;\n":            `COPY "pg_catalog"."pg_authid" ("rolname") FROM stdin`,
		"COPY public.t (a) FROM '/etc/passwd';\n":                      "",
		"COPY (SELECT 1) TO stdout;\n":                                 "",
		"COPY public.t (a) FROM stdin;\nCOPY public.t (a) FROM stdin;": "",
	} {
		c, err := pgarchive.ParseCopy(stmt)
		got := ""
		if err == nil {
			got = c.SQL()
		} else if !errors.Is(err, pgarchive.ErrUnsupported) {
			t.Errorf("ParseCopy(%q): %v is not ErrUnsupported", stmt, err)
		}
		if got != want {
			t.Errorf("ParseCopy(%q) = %q, want %q", stmt, got, want)
		}
	}
}

// A real pg_dump archive, compressed and not: every table's rows counted as count(*) has
// them, every block read.
func TestRealDump(t *testing.T) {
	c := pgtest.Start(t)
	db := "real"
	c.CreateDB(t, db)
	c.Exec(t, db, `CREATE TABLE a (id int, t text); INSERT INTO a SELECT g, repeat(md5(g::text), 20) || E'\n\t\\' FROM generate_series(1, 30000) g;
		CREATE TABLE "B b" (x text); INSERT INTO "B b" VALUES ('\.'), (E'\\.'), (NULL), ('');
		CREATE TABLE e (); SELECT lo_from_bytea(0, 'lo');`)
	for _, z := range []string{"-Z0", "-Z6"} {
		t.Run(z, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "d.dump")
			cmd := exec.Command(filepath.Join(c.BinDir, "pg_dump"), "-Fc", "-b", z, "-f", path, db)
			cmd.Env = append(os.Environ(), c.Env(db)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("pg_dump: %v\n%s", err, out)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			a, rows, err := read(t, b)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int64{"a": 30000, "B b": 4, "e": 0}
			for _, e := range a.Entries {
				if e.Desc != "TABLE DATA" {
					continue
				}
				if rows[e.ID] != want[e.Tag] {
					t.Errorf("%s: %d rows, want %d", e.Tag, rows[e.ID], want[e.Tag])
				}
				if _, err := pgarchive.ParseCopy(e.CopyStmt); err != nil {
					t.Error(err)
				}
				delete(want, e.Tag)
			}
			if len(want) > 0 {
				t.Errorf("tables not found: %v", want)
			}
		})
	}
}

// BenchmarkCountRows reads the archive in $DRCONSOLE_BENCH_DUMP as Verify and the row
// count beside pg_restore do.
func BenchmarkCountRows(b *testing.B) {
	path := os.Getenv("DRCONSOLE_BENCH_DUMP")
	if path == "" {
		b.Skip("DRCONSOLE_BENCH_DUMP names no archive")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		br := bufio.NewReaderSize(bytes.NewReader(data), 256<<10)
		a, err := pgarchive.ReadTOC(br, false)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := a.Blocks(br).CountRows(); err != nil {
			b.Fatal(err)
		}
	}
}
