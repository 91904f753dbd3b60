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

	"drconsole/recovery/pgarchive"
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

	toc    *pgarchive.Archive // the whole table of contents
	ledger *rowLedger         // a restore's row accounting, once its load counted the rows
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

// ReadArchive parses a custom-format archive's header and table of contents from r,
// leaving r positioned at the first data block. Errors wrap ErrNotBackup (no PGDMP
// header), ErrCorrupt or ErrTruncated.
func ReadArchive(r *bufio.Reader) (*Archive, error) {
	toc, err := pgarchive.ReadTOC(r, false)
	if err != nil {
		return fromTOC(toc), archiveErr(err)
	}
	return fromTOC(toc), nil
}

// fromTOC is what drconsole shows of an archive, from its table of contents.
func fromTOC(toc *pgarchive.Archive) *Archive {
	if toc == nil {
		return nil
	}
	v := toc.Version
	arch := &Archive{
		Version: v.String(), version: archiveVersion(int(v.Major), int(v.Minor), int(v.Rev)),
		Database: toc.Database, ServerVersion: toc.ServerVersion, DumpVersion: toc.DumpVersion,
		Created: toc.Created, Compression: toc.Compression, Entries: len(toc.Entries), toc: toc,
	}
	owners := map[string]bool{}
	schemas := map[string]bool{}
	for _, e := range toc.Entries {
		if e.Owner != "" {
			owners[e.Owner] = true
		}
		if e.Namespace != "" {
			schemas[e.Namespace] = true
		}
		switch e.Desc {
		case "TABLE DATA":
			arch.Tables = append(arch.Tables, Table{Schema: e.Namespace, Name: e.Tag, Owner: e.Owner, dumpID: e.ID})
		case "DATABASE":
			if m := encodingRE.FindStringSubmatch(e.Defn); m != nil {
				arch.Encoding = m[1]
			}
		case "BLOBS", "BLOB", "BLOB METADATA":
			arch.Blobs = true
		}
	}
	arch.Owners = sortedKeys(owners)
	arch.Schemas = sortedKeys(schemas)
	return arch
}

// archiveErr says an archive's fault with drconsole's sentinels: ErrNotBackup, ErrCorrupt
// or ErrTruncated. Errors of the stream underneath pass as they are.
func archiveErr(err error) error {
	var ae *pgarchive.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		kind := ErrCorrupt
		switch {
		case errors.Is(ae, pgarchive.ErrNotArchive):
			kind = ErrNotBackup
		case errors.Is(ae, pgarchive.ErrTruncated):
			kind = ErrTruncated
		}
		return fmt.Errorf("%w: %s", kind, ae.Msg)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: archive ends inside its table of contents", ErrTruncated)
	}
	return err
}

// archiveReader is Verify's walk over an archive: header and table of contents, then
// every data block, decompressed, each table's rows counted.
type archiveReader struct {
	r    *bufio.Reader
	toc  *pgarchive.Archive
	rows []TableRows // after readData: rows of each table in the archive
}

func (a *archiveReader) readHead() (*Archive, error) {
	toc, err := pgarchive.ReadTOC(a.r, false)
	if err != nil {
		return nil, err
	}
	a.toc = toc
	return fromTOC(toc), nil
}

// readTOC is done by readHead.
func (a *archiveReader) readTOC(*Archive) error { return nil }

// readData walks every data block after the table of contents to the end of the archive,
// decompressing compressed blocks and counting each table's rows, so that a corrupt or
// cut archive is found without a database. It returns the number of data blocks read.
func (a *archiveReader) readData(*Archive) (int, error) {
	blocks := a.toc.Blocks(a.r)
	defer blocks.Close()
	counts, err := blocks.CountRows()
	if err != nil {
		return blocks.Count(), archiveErr(err)
	}
	a.rows = tableRows(a.toc, counts)
	return blocks.Count(), nil
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
