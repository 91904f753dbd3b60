package recovery

import (
	"bytes"
	"fmt"
	"io"
)

// A plain SQL dump made with pg_dump -C or pg_dumpall creates databases and \connects to
// them; replayed by psql into the scratch database it would reach past it, possibly to
// the live database. sqlLines follows the dump line by line, skipping COPY data (where
// any text may start a line), and refuses such lines before psql sees them.
type sqlLines struct {
	line   int    // lines completed so far
	head   []byte // the current line's first bytes
	tail   []byte // the current line's last bytes
	inCopy bool   // between "COPY … FROM stdin;" and "\."
}

const sqlHeadLen, sqlTailLen = 64, 16

var sqlSwitches = []string{`\connect`, `\c `, "CREATE DATABASE ", "DROP DATABASE "}

// feed scans b, which continues the stream.
func (s *sqlLines) feed(b []byte) error {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		seg := b
		if i >= 0 {
			seg = b[:i]
		}
		if room := sqlHeadLen - len(s.head); room > 0 {
			s.head = append(s.head, seg[:min(room, len(seg))]...)
		}
		s.tail = append(s.tail, seg[max(0, len(seg)-sqlTailLen):]...)
		if len(s.tail) > sqlTailLen {
			s.tail = s.tail[len(s.tail)-sqlTailLen:]
		}
		if i < 0 {
			return nil
		}
		if err := s.endLine(); err != nil {
			return err
		}
		b = b[i+1:]
	}
	return nil
}

// endLine judges the line just completed (or the last one, at the end of the stream).
func (s *sqlLines) endLine() error {
	s.line++
	head := bytes.TrimRight(s.head, "\r")
	tail := bytes.TrimRight(s.tail, "\r")
	s.head, s.tail = s.head[:0], s.tail[:0]
	if s.inCopy {
		s.inCopy = !bytes.Equal(head, []byte(`\.`))
		return nil
	}
	t := bytes.TrimLeft(head, " \t")
	if hasPrefixFold(t, "COPY ") && bytes.HasSuffix(tail, []byte("FROM stdin;")) {
		s.inCopy = true
		return nil
	}
	for _, sw := range sqlSwitches {
		if hasPrefixFold(t, sw) {
			return fmt.Errorf("%w: line %d of the SQL dump switches or creates databases (%s): it was made with pg_dump -C or pg_dumpall; drconsole replays only single-database dumps into a scratch database", ErrPreflight, s.line, bytes.TrimSpace(t))
		}
	}
	return nil
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

// sqlGuard applies sqlLines to the stream fed to psql.
type sqlGuard struct {
	r     io.Reader
	lines sqlLines
}

func (g *sqlGuard) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if n > 0 {
		if ferr := g.lines.feed(p[:n]); ferr != nil {
			return 0, ferr
		}
	}
	if err == io.EOF && len(g.lines.head) > 0 {
		if ferr := g.lines.endLine(); ferr != nil {
			return 0, ferr
		}
	}
	return n, err
}
