package recovery

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zlib"
)

// Archive is what a pg_dump custom-format archive says about itself: its header and
// table of contents, read in Go before any database is touched.
type Archive struct {
	Version       string    // archive format version, e.g. "1.14"
	version       int       // the same as major<<16 | minor<<8 | rev
	Database      string    // the database it was dumped from
	ServerVersion string    // the server pg_dump read from
	DumpVersion   string    // the pg_dump that wrote it
	Created       time.Time // when pg_dump started (its local clock, read as UTC)
	Compression   string    // compression of the data blocks inside the archive: none, gzip, lz4, zstd
	Entries       int       // TOC entries
	Tables        []Table   // tables with data, in restore order
	Owners        []string  // roles that own objects in the archive, sorted
	Schemas       []string  // schemas the archive creates or uses, sorted
	Blobs         bool      // the archive holds large objects
	Encoding      string    // the dumped database's encoding, from its DATABASE entry
}

// Table is one "TABLE DATA" entry of the archive.
type Table struct {
	Schema string
	Name   string
	Owner  string
	dumpID int
}

// QualifiedName is schema.name the way pg_restore --verbose prints it.
func (t Table) QualifiedName() string {
	if t.Schema == "" {
		return t.Name
	}
	return t.Schema + "." + t.Name
}

var encodingRE = regexp.MustCompile(`ENCODING = '([^']+)'`)

func archiveVersion(major, minor, rev int) int { return major<<16 | minor<<8 | rev }

var (
	vers1_7  = archiveVersion(1, 7, 0)
	vers1_10 = archiveVersion(1, 10, 0)
	vers1_14 = archiveVersion(1, 14, 0)
	vers1_15 = archiveVersion(1, 15, 0)
	vers1_16 = archiveVersion(1, 16, 0)
)

// maxArchiveVersion is the newest archive version a pg_restore of this major version reads.
func maxArchiveVersion(pgMajor int) int {
	switch {
	case pgMajor <= 11:
		return archiveVersion(1, 13, 0)
	case pgMajor <= 15:
		return vers1_14
	case pgMajor == 16:
		return vers1_15
	default:
		return vers1_16
	}
}

// archiveReader reads the primitive values of the custom format.
type archiveReader struct {
	r       *bufio.Reader
	intSize int
	offSize int
	n       int64 // bytes consumed
}

func (a *archiveReader) byte() (byte, error) {
	b, err := a.r.ReadByte()
	if err == nil {
		a.n++
	}
	return b, err
}

func (a *archiveReader) full(p []byte) error {
	n, err := io.ReadFull(a.r, p)
	a.n += int64(n)
	return err
}

// int reads pg_dump's ReadInt: a sign byte, then intSize bytes little-endian.
func (a *archiveReader) int() (int, error) {
	sign, err := a.byte()
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := 0; i < a.intSize; i++ {
		b, err := a.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(b) << (8 * i)
	}
	if v > 1<<31 {
		return 0, fmt.Errorf("%w: integer out of range in archive", ErrCorrupt)
	}
	if sign != 0 {
		return -int(v), nil
	}
	return int(v), nil
}

// str reads ReadStr: a length (-1 for NULL) then the bytes. ok is false for NULL.
func (a *archiveReader) str() (s string, ok bool, err error) {
	n, err := a.int()
	if err != nil {
		return "", false, err
	}
	if n < 0 {
		return "", false, nil
	}
	if n > 256<<20 {
		return "", false, fmt.Errorf("%w: string of %d bytes in the table of contents", ErrCorrupt, n)
	}
	buf := make([]byte, n)
	if err := a.full(buf); err != nil {
		return "", false, err
	}
	return string(buf), true, nil
}

func (a *archiveReader) offset() error {
	if _, err := a.byte(); err != nil { // data state flag
		return err
	}
	_, err := a.r.Discard(a.offSize)
	a.n += int64(a.offSize)
	return err
}

// ReadArchive parses a custom-format archive's header and table of contents from r,
// leaving r positioned at the first data block. Errors wrap ErrNotBackup (no PGDMP
// header), ErrCorrupt or ErrTruncated.
func ReadArchive(r *bufio.Reader) (*Archive, error) {
	a := &archiveReader{r: r}
	arch, err := a.readHead()
	if err == nil {
		err = a.readTOC(arch)
	}
	return arch, archiveErr(err)
}

func archiveErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: archive ends inside its table of contents", ErrTruncated)
	}
	return err
}

func (a *archiveReader) readHead() (*Archive, error) {
	magic := make([]byte, 5)
	if err := a.full(magic); err != nil || string(magic) != "PGDMP" {
		return nil, fmt.Errorf("%w: no PGDMP header", ErrNotBackup)
	}
	var v [3]byte
	for i := range v {
		b, err := a.byte()
		if err != nil {
			return nil, err
		}
		v[i] = b
	}
	arch := &Archive{version: archiveVersion(int(v[0]), int(v[1]), int(v[2])), Version: fmt.Sprintf("%d.%d", v[0], v[1])}
	if v[0] != 1 || arch.version < vers1_10 {
		return arch, fmt.Errorf("%w: archive version %d.%d is not one drconsole reads (pg_dump 9.0 or newer makes 1.12+)", ErrCorrupt, v[0], v[1])
	}
	is, err := a.byte()
	if err != nil {
		return arch, err
	}
	if is < 1 || is > 8 {
		return arch, fmt.Errorf("%w: integer size %d in archive header", ErrCorrupt, is)
	}
	a.intSize = int(is)
	os, err := a.byte()
	if err != nil {
		return arch, err
	}
	a.offSize = int(os)
	format, err := a.byte()
	if err != nil {
		return arch, err
	}
	if format != 1 { // archCustom
		return arch, fmt.Errorf("%w: archive format %d is not pg_dump's custom format (-Fc)", ErrNotBackup, format)
	}
	if arch.version >= vers1_15 {
		alg, err := a.byte()
		if err != nil {
			return arch, err
		}
		arch.Compression = map[byte]string{0: "none", 1: "gzip", 2: "lz4", 3: "zstd"}[alg]
		if arch.Compression == "" {
			return arch, fmt.Errorf("%w: unknown compression %d in archive header", ErrCorrupt, alg)
		}
	} else {
		level, err := a.int()
		if err != nil {
			return arch, err
		}
		arch.Compression = "none"
		if level != 0 {
			arch.Compression = "gzip"
		}
	}
	var tm [7]int
	for i := range tm {
		if tm[i], err = a.int(); err != nil {
			return arch, err
		}
	}
	// struct tm: sec, min, hour, mday, mon (0-based), year (since 1900), isdst
	arch.Created = time.Date(tm[5]+1900, time.Month(tm[4]+1), tm[3], tm[2], tm[1], tm[0], 0, time.UTC)
	if arch.Database, _, err = a.str(); err != nil {
		return arch, err
	}
	if arch.ServerVersion, _, err = a.str(); err != nil {
		return arch, err
	}
	if arch.DumpVersion, _, err = a.str(); err != nil {
		return arch, err
	}
	return arch, nil
}

func (a *archiveReader) readTOC(arch *Archive) error {
	count, err := a.int()
	if err != nil {
		return err
	}
	if count < 0 || count > 50_000_000 {
		return fmt.Errorf("%w: %d entries in the table of contents", ErrCorrupt, count)
	}
	owners := map[string]bool{}
	schemas := map[string]bool{}
	for i := 0; i < count; i++ {
		id, err := a.int()
		if err != nil {
			return err
		}
		if id <= 0 {
			return fmt.Errorf("%w: entry ID %d out of range in the table of contents", ErrCorrupt, id)
		}
		if _, err := a.int(); err != nil { // hadDumper
			return err
		}
		var f [5]string // tableoid, oid, tag, desc, (section is an int)
		for j := 0; j < 4; j++ {
			if f[j], _, err = a.str(); err != nil {
				return err
			}
		}
		tag, desc := f[2], f[3]
		if _, err := a.int(); err != nil { // section
			return err
		}
		// defn, dropStmt, copyStmt, namespace, tablespace
		var s [5]string
		for j := range s {
			if s[j], _, err = a.str(); err != nil {
				return err
			}
		}
		namespace := s[3]
		if arch.version >= vers1_14 {
			if _, _, err := a.str(); err != nil { // tableam
				return err
			}
		}
		if arch.version >= vers1_16 {
			if _, err := a.int(); err != nil { // relkind
				return err
			}
		}
		owner, _, err := a.str()
		if err != nil {
			return err
		}
		if _, _, err := a.str(); err != nil { // withOids
			return err
		}
		for { // dependencies, NULL-terminated
			_, ok, err := a.str()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
		}
		if arch.version >= vers1_7 {
			if err := a.offset(); err != nil {
				return err
			}
		} else if _, err := a.int(); err != nil {
			return err
		}
		if owner != "" {
			owners[owner] = true
		}
		if namespace != "" {
			schemas[namespace] = true
		}
		switch desc {
		case "TABLE DATA":
			arch.Tables = append(arch.Tables, Table{Schema: namespace, Name: tag, Owner: owner, dumpID: id})
		case "DATABASE":
			if m := encodingRE.FindStringSubmatch(s[0]); m != nil {
				arch.Encoding = m[1]
			}
		case "BLOBS", "BLOB", "BLOB METADATA":
			arch.Blobs = true
		}
	}
	arch.Entries = count
	arch.Owners = sortedKeys(owners)
	arch.Schemas = sortedKeys(schemas)
	return nil
}

// readData walks every data block after the table of contents to the end of the archive,
// decompressing compressed blocks, so that a corrupt or cut archive is found without a
// database. It returns the number of data blocks read.
func (a *archiveReader) readData(arch *Archive) (int, error) {
	blocks := 0
	chunk := make([]byte, 64<<10)
	for {
		typ, err := a.byte()
		if err == io.EOF {
			return blocks, nil
		}
		if err != nil {
			return blocks, err
		}
		if typ != 1 && typ != 3 { // BLK_DATA, BLK_BLOBS
			return blocks, fmt.Errorf("%w: unknown data block type %d after %d blocks", ErrCorrupt, typ, blocks)
		}
		if _, err := a.int(); err != nil { // dump id
			return blocks, err
		}
		if typ == 1 {
			if err := a.readChunks(arch, chunk); err != nil {
				return blocks, err
			}
		} else {
			for {
				oid, err := a.int()
				if err != nil {
					return blocks, err
				}
				if oid == 0 {
					break
				}
				if err := a.readChunks(arch, chunk); err != nil {
					return blocks, err
				}
			}
		}
		blocks++
	}
}

// readChunks reads one length-prefixed run of chunks, ending in a zero length, and
// checks that compressed data inflates to its end.
func (a *archiveReader) readChunks(arch *Archive, buf []byte) error {
	pr, pw := io.Pipe()
	inflated := make(chan error, 1)
	compressed := arch.Compression == "gzip"
	if compressed {
		go func() {
			zr, err := zlib.NewReader(pr)
			if err == nil {
				_, err = io.Copy(io.Discard, zr)
			}
			pr.CloseWithError(err)
			inflated <- err
		}()
	}
	var werr error
	for {
		n, err := a.int()
		if err != nil {
			pw.CloseWithError(err)
			if compressed {
				<-inflated
			}
			return err
		}
		if n == 0 {
			break
		}
		if n < 0 {
			n = -n
		}
		for n > 0 {
			k := min(n, len(buf))
			if err := a.full(buf[:k]); err != nil {
				pw.CloseWithError(err)
				if compressed {
					<-inflated
				}
				return err
			}
			if compressed && werr == nil {
				_, werr = pw.Write(buf[:k])
			}
			n -= k
		}
	}
	pw.Close()
	if compressed {
		if err := <-inflated; err != nil {
			return fmt.Errorf("%w: a data block does not decompress: %v", ErrCorrupt, err)
		}
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// pgMajor reads the major version from "pg_restore (PostgreSQL) 15.18 (Debian …)".
func pgMajor(versionLine string) (int, error) {
	for _, f := range strings.Fields(versionLine) {
		if f == "" || f[0] < '0' || f[0] > '9' {
			continue
		}
		major, _, _ := strings.Cut(f, ".")
		n, err := strconv.Atoi(major)
		if err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("cannot read a version from %q", versionLine)
}
