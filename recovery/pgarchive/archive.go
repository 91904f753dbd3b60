// Package pgarchive reads pg_dump's custom-format archive (-Fc) from a stream in one pass:
// its header and table of contents, then every data block, decompressed, with no seeking.
package pgarchive

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Errors. Every error this package makes wraps one of them; an error of the stream
// underneath (a decryption or decompression layer, a cancel) is returned as it is.
var (
	ErrNotArchive  = errors.New("not a pg_dump custom-format archive")
	ErrCorrupt     = errors.New("archive is corrupt")
	ErrTruncated   = errors.New("archive is truncated")
	ErrUnsupported = errors.New("not supported by this reader")
)

// Error is a fault of the archive itself. Its message says what, without the kind, so a
// caller can put its own words in front ("backup is corrupt: <Msg>").
type Error struct {
	Kind error // ErrNotArchive, ErrCorrupt, ErrTruncated or ErrUnsupported
	Msg  string
}

func (e *Error) Error() string        { return e.Kind.Error() + ": " + e.Msg }
func (e *Error) Is(target error) bool { return target == e.Kind }

func errorf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Version is an archive format version, e.g. 1.14 (pg_dump 12–15).
type Version struct{ Major, Minor, Rev byte }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Int is the version as one comparable number.
func (v Version) Int() int { return int(v.Major)<<16 | int(v.Minor)<<8 | int(v.Rev) }

// AtLeast reports whether v is major.minor or newer.
func (v Version) AtLeast(major, minor byte) bool {
	return v.Int() >= int(major)<<16|int(minor)<<8
}

// Section is the part of a restore a TOC entry belongs to.
type Section int

const (
	SectionNone     Section = 1 // comments, ACLs: they go with the entry before them
	SectionPreData  Section = 2
	SectionData     Section = 3
	SectionPostData Section = 4
)

func (s Section) String() string {
	switch s {
	case SectionNone:
		return "none"
	case SectionPreData:
		return "pre-data"
	case SectionData:
		return "data"
	case SectionPostData:
		return "post-data"
	}
	return "section " + strconv.Itoa(int(s))
}

// Data states of a TOC entry (pg_backup_custom.c).
const (
	OffsetNotSet = 1 // has data, position unknown (written to a pipe)
	OffsetSet    = 2 // has data at Offset
	NoData       = 3
)

// Entry is one item of the table of contents.
type Entry struct {
	ID         int
	HadDumper  bool // the entry has a data block
	TableOID   string
	OID        string
	Tag        string
	Desc       string // "TABLE", "TABLE DATA", "INDEX", "ACL", …
	Section    Section
	Defn       string // the SQL that creates it
	DropStmt   string
	CopyStmt   string // TABLE DATA: "COPY schema.table (cols) FROM stdin;\n"
	Namespace  string
	Tablespace string
	TableAM    string
	RelKind    byte // 1.16+, else 0
	Owner      string
	WithOIDs   bool
	Deps       []int
	DataState  int
	Offset     int64
}

// Archive is an archive's header and table of contents.
type Archive struct {
	Version       Version
	IntSize       int
	OffSize       int
	Compression   string // of the data blocks: none, gzip, lz4, zstd
	Created       time.Time
	Database      string
	ServerVersion string
	DumpVersion   string
	Entries       []*Entry // in TOC order
	// Raw is the archive up to its first data block, kept when ReadTOC was asked to: the
	// same bytes make an archive without data that pg_restore reads as the original.
	Raw []byte

	byID map[int]*Entry
}

// Entry returns the TOC entry with dump ID id, or nil.
func (a *Archive) Entry(id int) *Entry { return a.byID[id] }

// MaxID is the largest dump ID in the table of contents.
func (a *Archive) MaxID() int {
	m := 0
	for _, e := range a.Entries {
		m = max(m, e.ID)
	}
	return m
}

// prim reads the custom format's primitive values and, when keep is set, keeps every
// byte it reads.
type prim struct {
	r       *bufio.Reader
	intSize int
	offSize int
	keep    *bytes.Buffer
}

func (p *prim) byte() (byte, error) {
	b, err := p.r.ReadByte()
	if err == nil && p.keep != nil {
		p.keep.WriteByte(b)
	}
	return b, err
}

func (p *prim) full(b []byte) error {
	n, err := io.ReadFull(p.r, b)
	if p.keep != nil {
		p.keep.Write(b[:n])
	}
	return err
}

// int reads pg_dump's ReadInt: a sign byte, then intSize bytes little-endian.
func (p *prim) int() (int, error) {
	sign, err := p.byte()
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := 0; i < p.intSize; i++ {
		b, err := p.byte()
		if err != nil {
			return 0, err
		}
		if i < 8 {
			v |= uint64(b) << (8 * i)
		}
	}
	if v > 1<<31 {
		return 0, errorf(ErrCorrupt, "integer out of range in archive")
	}
	if sign != 0 {
		return -int(v), nil
	}
	return int(v), nil
}

// str reads ReadStr: a length (-1 for NULL) then the bytes. ok is false for NULL.
func (p *prim) str() (s string, ok bool, err error) {
	n, err := p.int()
	if err != nil {
		return "", false, err
	}
	if n < 0 {
		return "", false, nil
	}
	if n > 256<<20 {
		return "", false, errorf(ErrCorrupt, "string of %d bytes in the table of contents", n)
	}
	buf := make([]byte, n)
	if err := p.full(buf); err != nil {
		return "", false, err
	}
	return string(buf), true, nil
}

// offset reads ReadOffset: a data-state flag, then offSize bytes little-endian.
func (p *prim) offset() (state int, off int64, err error) {
	flag, err := p.byte()
	if err != nil {
		return 0, 0, err
	}
	for i := 0; i < p.offSize; i++ {
		b, err := p.byte()
		if err != nil {
			return 0, 0, err
		}
		if i < 8 {
			off |= int64(b) << (8 * i)
		}
	}
	return int(flag), off, nil
}

// ReadTOC reads an archive's header and table of contents from r, leaving r at the first
// data block. With keepRaw the bytes read are kept in Archive.Raw. The Archive is
// returned with what was read even on error (for its version in messages).
func ReadTOC(r *bufio.Reader, keepRaw bool) (*Archive, error) {
	p := &prim{r: r}
	if keepRaw {
		p.keep = &bytes.Buffer{}
	}
	a, err := p.readHead()
	if err == nil {
		err = p.readTOC(a)
	}
	if a != nil && p.keep != nil {
		a.Raw = p.keep.Bytes()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = errorf(ErrTruncated, "archive ends inside its table of contents")
	}
	return a, err
}

func (p *prim) readHead() (*Archive, error) {
	magic := make([]byte, 5)
	if err := p.full(magic); err != nil || string(magic) != "PGDMP" {
		return nil, errorf(ErrNotArchive, "no PGDMP header")
	}
	var v [3]byte
	if err := p.full(v[:]); err != nil {
		return nil, err
	}
	a := &Archive{Version: Version{v[0], v[1], v[2]}, byID: map[int]*Entry{}}
	if v[0] != 1 || !a.Version.AtLeast(1, 10) {
		return a, errorf(ErrCorrupt, "archive version %d.%d is not one drconsole reads (pg_dump 9.0 or newer makes 1.12+)", v[0], v[1])
	}
	is, err := p.byte()
	if err != nil {
		return a, err
	}
	if is < 1 || is > 8 {
		return a, errorf(ErrCorrupt, "integer size %d in archive header", is)
	}
	p.intSize, a.IntSize = int(is), int(is)
	os, err := p.byte()
	if err != nil {
		return a, err
	}
	if os < 1 || os > 8 {
		return a, errorf(ErrCorrupt, "offset size %d in archive header", os)
	}
	p.offSize, a.OffSize = int(os), int(os)
	format, err := p.byte()
	if err != nil {
		return a, err
	}
	if format != 1 { // archCustom
		return a, errorf(ErrNotArchive, "archive format %d is not pg_dump's custom format (-Fc)", format)
	}
	if a.Version.AtLeast(1, 15) {
		alg, err := p.byte()
		if err != nil {
			return a, err
		}
		a.Compression = map[byte]string{0: "none", 1: "gzip", 2: "lz4", 3: "zstd"}[alg]
		if a.Compression == "" {
			return a, errorf(ErrCorrupt, "unknown compression %d in archive header", alg)
		}
	} else {
		level, err := p.int()
		if err != nil {
			return a, err
		}
		a.Compression = "none"
		if level != 0 {
			a.Compression = "gzip"
		}
	}
	var tm [7]int
	for i := range tm {
		if tm[i], err = p.int(); err != nil {
			return a, err
		}
	}
	// struct tm: sec, min, hour, mday, mon (0-based), year (since 1900), isdst
	a.Created = time.Date(tm[5]+1900, time.Month(tm[4]+1), tm[3], tm[2], tm[1], tm[0], 0, time.UTC)
	if a.Database, _, err = p.str(); err != nil {
		return a, err
	}
	if a.ServerVersion, _, err = p.str(); err != nil {
		return a, err
	}
	if a.DumpVersion, _, err = p.str(); err != nil {
		return a, err
	}
	return a, nil
}

func (p *prim) readTOC(a *Archive) error {
	count, err := p.int()
	if err != nil {
		return err
	}
	if count < 0 || count > 50_000_000 {
		return errorf(ErrCorrupt, "%d entries in the table of contents", count)
	}
	a.Entries = make([]*Entry, 0, min(count, 1<<16))
	for i := 0; i < count; i++ {
		e, err := p.readEntry(a)
		if err != nil {
			return err
		}
		if a.byID[e.ID] != nil {
			return errorf(ErrCorrupt, "entry ID %d twice in the table of contents", e.ID)
		}
		a.byID[e.ID] = e
		a.Entries = append(a.Entries, e)
	}
	return nil
}

func (p *prim) readEntry(a *Archive) (*Entry, error) {
	e := &Entry{}
	var err error
	if e.ID, err = p.int(); err != nil {
		return nil, err
	}
	if e.ID <= 0 {
		return nil, errorf(ErrCorrupt, "entry ID %d out of range in the table of contents", e.ID)
	}
	had, err := p.int()
	if err != nil {
		return nil, err
	}
	e.HadDumper = had != 0
	for _, dst := range []*string{&e.TableOID, &e.OID, &e.Tag, &e.Desc} {
		if *dst, _, err = p.str(); err != nil {
			return nil, err
		}
	}
	e.Section = SectionNone
	if a.Version.AtLeast(1, 11) {
		section, err := p.int()
		if err != nil {
			return nil, err
		}
		e.Section = Section(section)
	}
	for _, dst := range []*string{&e.Defn, &e.DropStmt, &e.CopyStmt, &e.Namespace, &e.Tablespace} {
		if *dst, _, err = p.str(); err != nil {
			return nil, err
		}
	}
	if a.Version.AtLeast(1, 14) {
		if e.TableAM, _, err = p.str(); err != nil {
			return nil, err
		}
	}
	if a.Version.AtLeast(1, 16) {
		kind, err := p.int()
		if err != nil {
			return nil, err
		}
		e.RelKind = byte(kind)
	}
	if e.Owner, _, err = p.str(); err != nil {
		return nil, err
	}
	withOIDs, _, err := p.str()
	if err != nil {
		return nil, err
	}
	e.WithOIDs = withOIDs == "true"
	for { // dependencies, NULL-terminated
		d, ok, err := p.str()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		id, err := strconv.Atoi(d)
		if err != nil || id <= 0 {
			return nil, errorf(ErrCorrupt, "dependency %q of entry %d in the table of contents", d, e.ID)
		}
		e.Deps = append(e.Deps, id)
	}
	if e.DataState, e.Offset, err = p.offset(); err != nil {
		return nil, err
	}
	return e, nil
}
