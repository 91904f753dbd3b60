// Package wal is drconsole's WAL archive: what archive_command (Push) and restore_command
// (Fetch) run, over the same backup locations as everything else (the wal/ folder of
// each). A file is stored compressed (zstd) and, when a recipient key is given,
// encrypted, under a name that carries the SHA-256 of its content: pushing the same file
// twice is recognised without the key, and a different file under a name already
// archived is refused. Fetch also reads an archive other tools wrote (raw, gzip, zstd or
// OpenPGP files named as PostgreSQL names them), deciding by content, not by name.
package wal

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"regexp"
	"strconv"
	"strings"
)

// Kinds of files PostgreSQL archives.
const (
	KindSegment = "segment" // 000000010000000000000001
	KindHistory = "history" // 00000002.history
	KindBackup  = "backup"  // 000000010000000000000002.00000028.backup
	KindPartial = "partial" // 000000010000000000000003.partial
)

var (
	segmentRE = regexp.MustCompile(`^[0-9A-F]{24}$`)
	historyRE = regexp.MustCompile(`^[0-9A-F]{8}\.history$`)
	backupRE  = regexp.MustCompile(`^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$`)
	partialRE = regexp.MustCompile(`^[0-9A-F]{24}\.partial$`)
)

// ErrName: not a name PostgreSQL gives a WAL file.
var ErrName = errors.New("not a WAL file name")

// Kind says what a WAL file name is, or ErrName.
func Kind(name string) (string, error) {
	switch {
	case segmentRE.MatchString(name):
		return KindSegment, nil
	case historyRE.MatchString(name):
		return KindHistory, nil
	case backupRE.MatchString(name):
		return KindBackup, nil
	case partialRE.MatchString(name):
		return KindPartial, nil
	}
	return "", fmt.Errorf("%w: %q (PostgreSQL names them like 000000010000000000000001, 00000002.history, …)", ErrName, printable(name))
}

// sumLen is how many hex digits of the SHA-256 a stored name carries (160 bits).
const sumLen = 40

// storedName is the name drconsole stores a WAL file under.
func storedName(name string, sum []byte, encrypted bool) string {
	s := name + "-" + hex.EncodeToString(sum)[:sumLen] + ".zst"
	if encrypted {
		s += ".gpg"
	}
	return s
}

// stored is an archived file's name read back: which WAL file it holds and, when
// drconsole stored it, the content's checksum.
type stored struct {
	sum string // sumLen hex digits; "" for a file another tool archived
}

// parseStored reads an archived file's name as the copy of WAL file name, or ok=false
// when it is another file (a longer name that starts alike: 000…02.00000028.backup
// when asked for 000…02).
func parseStored(obj, name string) (st stored, ok bool) {
	rest, found := strings.CutPrefix(obj, name)
	if !found {
		return stored{}, false
	}
	if s, enc := strings.CutSuffix(rest, ".zst.gpg"); enc {
		rest = s + ".zst"
	}
	if s, ours := strings.CutSuffix(rest, ".zst"); ours && len(s) == sumLen+1 && s[0] == '-' && isHex(s[1:]) {
		return stored{sum: s[1:]}, true
	}
	// Another tool's: the name itself, with a compression or encryption suffix at most.
	switch rest {
	case "", ".gz", ".zst", ".gpg", ".pgp", ".gz.gpg", ".zst.gpg", ".lz4", ".br", ".xz", ".bz2":
		return stored{}, true
	}
	return stored{}, false
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// segment is a segment file's name read as numbers.
type segment struct {
	tli, log, seg uint32
}

func parseSegment(name string) (segment, bool) {
	if !segmentRE.MatchString(name) {
		return segment{}, false
	}
	n := func(s string) uint32 { v, _ := strconv.ParseUint(s, 16, 32); return uint32(v) }
	return segment{n(name[:8]), n(name[8:16]), n(name[16:24])}, true
}

func (s segment) String() string { return fmt.Sprintf("%08X%08X%08X", s.tli, s.log, s.seg) }

// next is the segment after s on its timeline, for segments of segSize bytes.
func (s segment) next(segSize int64) segment {
	perLog := uint32((1 << 32) / segSize)
	if s.seg+1 >= perLog {
		return segment{s.tli, s.log + 1, 0}
	}
	return segment{s.tli, s.log, s.seg + 1}
}

// prev is the segment before s ("" at the very start of the WAL).
func (s segment) prev(segSize int64) (segment, bool) {
	switch {
	case s.seg > 0:
		return segment{s.tli, s.log, s.seg - 1}, true
	case s.log > 0:
		return segment{s.tli, s.log - 1, uint32((1<<32)/segSize) - 1}, true
	}
	return s, false
}

// startLSN is where s begins in the WAL.
func (s segment) startLSN(segSize int64) uint64 {
	return uint64(s.log)<<32 + uint64(s.seg)*uint64(segSize)
}

// headerLen is how much of a segment checkSegment reads.
const headerLen = 40

// headerSegSize is the segment size a segment's first page (head, headerLen bytes) gives,
// 0 if it is no long page header or the size is not one a segment can have. Only a guess
// until checkSegment has seen the whole file.
func headerSegSize(head []byte) int64 {
	const xlpLongHeader = 0x0002
	if len(head) < headerLen || binary.LittleEndian.Uint16(head[2:4])&xlpLongHeader == 0 {
		return 0
	}
	size := int64(binary.LittleEndian.Uint32(head[32:36]))
	if size < 1<<20 || size > 1<<30 || bits.OnesCount64(uint64(size)) != 1 {
		return 0
	}
	return size
}

// checkSegment looks at a segment's first page (head, at least headerLen bytes of a file
// of size bytes): a long page header (XLogLongPageHeader) whose segment size is the
// file's, whose block size is a power of two, and whose page address is where the name
// says the segment begins. A segment stored under another name, cut short or damaged at
// its start fails it; PostgreSQL would take some of these for the end of the WAL.
func checkSegment(name string, head []byte, size int64) error {
	s, ok := parseSegment(name)
	if !ok {
		return nil
	}
	if size < 1<<20 || size > 1<<30 || bits.OnesCount64(uint64(size)) != 1 || len(head) < headerLen {
		return fmt.Errorf("%s is %d bytes: a WAL segment is a power of two from 1 MiB to 1 GiB", name, size)
	}
	const xlpLongHeader = 0x0002
	info := binary.LittleEndian.Uint16(head[2:4])
	pageAddr := binary.LittleEndian.Uint64(head[8:16])
	segSize := binary.LittleEndian.Uint32(head[32:36])
	blockSize := binary.LittleEndian.Uint32(head[36:40])
	switch {
	case info&xlpLongHeader == 0:
		return fmt.Errorf("%s does not start with a WAL segment's header", name)
	case int64(segSize) != size:
		return fmt.Errorf("%s says its segments are %d bytes, but it is %d", name, segSize, size)
	case blockSize < 1024 || bits.OnesCount32(blockSize) != 1:
		return fmt.Errorf("%s does not start with a WAL segment's header (block size %d)", name, blockSize)
	case pageAddr != s.startLSN(size):
		return fmt.Errorf("%s holds the WAL from %X/%X, not the segment its name says (%X/%X)", name,
			pageAddr>>32, uint32(pageAddr), s.startLSN(size)>>32, uint32(s.startLSN(size)))
	}
	return nil
}

// printable is s safe to print: control characters escaped, at most 80 bytes.
func printable(s string) string {
	q := strconv.QuoteToGraphic(s)
	q = q[1 : len(q)-1]
	if len(q) > 80 {
		q = q[:80] + "…"
	}
	return q
}
