// Package storage finds backups: a Location (a local directory, an S3 bucket and prefix)
// lists the backups it holds and opens one as a stream; names parse into Backup values.
package storage

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Kind is what the backup job called the backup: full or incremental (both are full dumps).
type Kind string

// Format is the dump format inside the compression and encryption layers.
type Format string

// Compression is the compression layer between the encryption and the dump.
type Compression string

const (
	KindFull        Kind = "full"
	KindIncremental Kind = "incremental"
	KindUnknown     Kind = "unknown"

	FormatCustom  Format = "custom" // pg_dump -Fc, restored with pg_restore
	FormatPlain   Format = "plain"  // plain SQL, run statement by statement by drconsole itself
	FormatUnknown Format = "unknown"

	CompressionGzip    Compression = "gzip"
	CompressionZstd    Compression = "zstd"
	CompressionNone    Compression = "none"
	CompressionUnknown Compression = "unknown"
)

// Backup is one backup file in one location. The name only orders and dates it; what it
// really holds is decided from its content when it is opened (see Sniff).
type Backup struct {
	Name        string      // file name, e.g. spywatcher_full_20240125_120000.dump.gz.gpg
	Prefix      string      // the application's prefix in the name, e.g. spywatcher; "" for names the backup job does not make
	Key         string      // where the location keeps it: a path relative to the directory, or an object key
	Location    string      // name of the location it was listed from
	Kind        Kind        // from the name; KindUnknown for names the backup job does not make
	Format      Format      // from the name
	Compression Compression // from the name
	Encrypted   bool        // from the name (.gpg)
	Time        time.Time   // the timestamp in the name, UTC; zero when the name has none
	Size        int64       // bytes, as stored
	Modified    time.Time   // when the location last saw it written
	ETag        string      // the store's identity for this version of the object, when it has one
}

// Recognized reports whether the name is one a backup job makes:
// <prefix>_{full,incremental}_YYYYMMDD_HHMMSS.{dump,sql}[.gz|.zst][.gpg].
func (b Backup) Recognized() bool { return b.Kind != KindUnknown }

// Of reports whether the backup is one of the application's whose backups carry one of
// prefixes (any recognised backup when prefixes is empty).
func (b Backup) Of(prefixes []string) bool {
	if !b.Recognized() {
		return false
	}
	if len(prefixes) == 0 {
		return true
	}
	for _, p := range prefixes {
		if b.Prefix == p {
			return true
		}
	}
	return false
}

// DefaultPrefix is the shipped runbook's application, the prefix of its backups when
// neither a prefix nor a database is configured.
const DefaultPrefix = "spywatcher"

// SortTime is the time a backup is ordered by: its name's timestamp, else when it was written.
func (b Backup) SortTime() time.Time {
	if !b.Time.IsZero() {
		return b.Time
	}
	return b.Modified
}

// The backup job's names: the application's prefix (its database's name by default), the
// kind, the backup host's time, and the layers.
var nameRE = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9_.-]*?)_(full|incremental)_(\d{8}_\d{6})\.(dump|sql)(\.gz|\.zst)?(\.gpg)?$`)

// ParseName reads what a backup's name says. Names that do not follow the backup job's
// pattern come back with Kind, Format and Compression unknown, except for the suffixes
// that can still be read (.gpg, .gz, .zst, .dump, .sql).
func ParseName(name string) Backup {
	b := Backup{Name: name, Key: name, Kind: KindUnknown, Format: FormatUnknown, Compression: CompressionUnknown}
	if m := nameRE.FindStringSubmatch(name); m != nil {
		if t, err := time.ParseInLocation("20060102_150405", m[3], time.UTC); err == nil {
			b.Prefix, b.Kind, b.Time = m[1], Kind(m[2]), t
		}
	}
	rest := name
	if s, ok := strings.CutSuffix(rest, ".gpg"); ok {
		b.Encrypted, rest = true, s
	} else if s, ok := strings.CutSuffix(rest, ".pgp"); ok {
		b.Encrypted, rest = true, s
	}
	switch {
	case strings.HasSuffix(rest, ".gz"):
		b.Compression, rest = CompressionGzip, strings.TrimSuffix(rest, ".gz")
	case strings.HasSuffix(rest, ".zst"):
		b.Compression, rest = CompressionZstd, strings.TrimSuffix(rest, ".zst")
	}
	switch {
	case strings.HasSuffix(rest, ".dump"):
		b.Format = FormatCustom
	case strings.HasSuffix(rest, ".sql"):
		b.Format = FormatPlain
	}
	if b.Format != FormatUnknown && b.Compression == CompressionUnknown {
		b.Compression = CompressionNone
	}
	return b
}

// SortNewestFirst orders backups newest first; ties go by name so the order is stable.
func SortNewestFirst(bs []Backup) {
	sort.SliceStable(bs, func(i, j int) bool {
		ti, tj := bs[i].SortTime(), bs[j].SortTime()
		if !ti.Equal(tj) {
			return ti.After(tj)
		}
		return bs[i].Name > bs[j].Name
	})
}

// Printable is text from outside (a backup's or an object's name) made safe to print:
// control characters, escape sequences and invalid UTF-8 are shown escaped, never sent
// to a terminal. Text without them is returned as it is.
func Printable(s string) string {
	if utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == 0x2028 || r == 0x2029 }) < 0 {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}
