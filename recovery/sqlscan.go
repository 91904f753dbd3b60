package recovery

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
)

// A plain SQL dump is untrusted text. sqlScanner splits it into statements and COPY data
// the way psql does (src/fe_utils/psqlscan.l, PostgreSQL 16+ rules), so each statement
// is sent to the server exactly as psql would send it, and finds what psql would have
// taken for a meta-command: a backslash outside every quote and comment. drconsole runs
// no meta-commands; it refuses a dump that holds one (pg_dump's own \restrict and
// \unrestrict lines excepted).

const (
	maxStatement = 256 << 20 // bytes one statement may hold
	metaShown    = 40        // bytes of a refused meta-command quoted in the error
	scanRead     = 64 << 10  // bytes read at least per refill
)

// errHeadEnd says the scan reached the end of a peeked head that is not the whole dump.
var errHeadEnd = errors.New("end of the peeked head")

type lexState uint8

const (
	lexInitial     lexState = iota
	lexLineComment          // -- to the end of the line
	lexComment              // /* … */, nested
	lexQuote                // '…' with standard_conforming_strings on, N'…'
	lexEscape               // E'…', or '…' with standard_conforming_strings off
	lexUnicode              // U&'…'
	lexBits                 // B'…' and X'…': no '' inside
	lexQuotedIdent          // "…" and U&"…"
	lexDollar               // $tag$…$tag$
)

type lexEvent uint8

const (
	evNone      lexEvent = iota
	evMore               // the buffer ends before the lexer can decide; refill
	evStatement          // a statement ends at pos (its ';' consumed)
	evBackslash          // a backslash outside quotes and comments at pos
	evEnd                // the end of the dump
)

type tokKind uint8

const (
	tokWord   tokKind = iota + 1 // an identifier or keyword, not quoted
	tokQuoted                    // "…" or U&"…"
	tokString                    // any string constant, dollar quotes included
	tokNumber
	tokPunct // ( ) , . ; =
	tokOther
)

// sqlToken is one of the first tokens of a statement: words lower-cased, short text only.
type sqlToken struct {
	kind tokKind
	text string
}

const firstTokens = 6

// sqlStmt is one statement of the dump.
type sqlStmt struct {
	text     []byte // the statement through its ';'; valid until the scanner is used again
	line     int    // the line of the dump it starts on
	copy     bool   // COPY … FROM stdin in pg_dump's form: its data follows, read it with copyData
	dataLine int    // the line its COPY data starts on
	table    string // the table a COPY loads, as the dump names it, safe to print
	toks     [firstTokens]sqlToken
}

// COPY … FROM stdin is recognised only in the form pg_dump writes:
// COPY name[.name] [(name [, …])] FROM stdin ;
const (
	copyNone = iota // not COPY (yet): the first token decides
	copyTable
	copyAfterName
	copyQualified
	copyAfterTable
	copyColumn
	copyAfterColumn
	copyFrom
	copyStdin
	copySemicolon
	copyMatched // the ';' was seen; the rest of the line must be blank
	copyNot
)

type sqlScanner struct {
	src    io.Reader
	buf    []byte
	pos    int   // next byte to lex
	offset int64 // stream offset of buf[0]
	line   int   // line number at pos
	eof    bool  // src is exhausted
	head   bool  // src is a peeked head, not the whole dump: its end is not the dump's end
	err    error // src failed: sticky
	max    int   // bytes a statement may hold

	stdStrings bool // standard_conforming_strings is on: '…' knows no backslash escapes

	// The statement being lexed.
	start      int // offset in buf of its first byte; -1 before its first token
	startLine  int
	state      lexState
	tokStart   int // offset from start of the quoted token being lexed
	parenDepth int
	beginDepth int // BEGIN … END of a SQL-standard function body
	xcDepth    int
	dollarTag  []byte
	idCount    int     // identifiers so far: psql's CREATE FUNCTION heuristic
	ids        [4]byte // their first letters, for create/or/replace/function/procedure
	ntok       int
	toks       [firstTokens]sqlToken
	copyState  int
	tableFrom  int // offsets from start of the COPY's table name
	tableTo    int
}

func newSQLScanner(r io.Reader) *sqlScanner {
	return &sqlScanner{src: r, line: 1, start: -1, max: maxStatement, stdStrings: true}
}

// final reports that the buffer's end is the dump's end.
func (s *sqlScanner) final() bool { return s.eof && !s.head }

// have reports whether n bytes from pos are buffered, or no more will come.
func (s *sqlScanner) have(n int) bool { return len(s.buf)-s.pos >= n || s.final() }

// at is the byte i past pos, or -1 past the end of the buffer.
func (s *sqlScanner) at(i int) int {
	if s.pos+i < len(s.buf) {
		return int(s.buf[s.pos+i])
	}
	return -1
}

// advance consumes n bytes, counting lines.
func (s *sqlScanner) advance(n int) {
	s.line += bytes.Count(s.buf[s.pos:s.pos+n], []byte{'\n'})
	s.pos += n
}

// fill reads more of the dump. Each refill at least doubles what is buffered past pos, so
// a token rescanned after a refill costs linear time overall.
func (s *sqlScanner) fill() error {
	if s.err != nil {
		return s.err
	}
	if s.eof {
		if s.head {
			return errHeadEnd
		}
		return io.ErrUnexpectedEOF // the lexer asked for more after the end: a bug
	}
	keep := s.pos
	if s.start >= 0 {
		keep = s.start
	}
	if len(s.buf)-keep >= s.max {
		line := s.line
		if s.start >= 0 {
			line = s.startLine
		}
		return s.tooLong(line)
	}
	if keep > 0 {
		keep-- // one byte of history: whether pos starts a line
	}
	want := max(scanRead, len(s.buf)-s.pos)
	if keep > 0 && (keep >= len(s.buf)/2 || cap(s.buf)-len(s.buf) < want) {
		n := copy(s.buf, s.buf[keep:])
		s.buf = s.buf[:n]
		s.pos -= keep
		if s.start >= 0 {
			s.start -= keep
		}
		s.offset += int64(keep)
	}
	if cap(s.buf)-len(s.buf) < want {
		grown := make([]byte, len(s.buf), max(4*scanRead, 2*cap(s.buf), len(s.buf)+want))
		copy(grown, s.buf)
		s.buf = grown
	}
	added := 0
	for stalls := 0; added < want; {
		n, err := s.src.Read(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+n]
		added += n
		if err == io.EOF {
			s.eof = true
			break
		}
		if err != nil {
			// What came before the error is lexed first; the error comes with the next refill.
			s.err = err
			if added > 0 {
				return nil
			}
			return err
		}
		if n > 0 {
			stalls = 0
		} else if stalls++; stalls > 100 {
			s.err = io.ErrNoProgress
			return s.err
		}
		if len(s.buf) == cap(s.buf) {
			break
		}
	}
	return nil
}

func (s *sqlScanner) tooLong(line int) error {
	return fmt.Errorf("%w: the statement at line %d of the SQL dump is longer than %s", ErrPreflight, line, formatBytes(int64(s.max)))
}

// next returns the next statement, or io.EOF after the last. Errors: ErrPreflight for a
// meta-command or a statement a single-database dump never holds, the reader's own
// error as it is. After a COPY statement, its data must be read (copyData) first.
func (s *sqlScanner) next() (sqlStmt, error) {
	for {
		ev, err := s.lex()
		if err != nil {
			return sqlStmt{}, err
		}
		switch ev {
		case evMore:
			if err := s.fill(); err != nil {
				return sqlStmt{}, err
			}
		case evStatement:
			for {
				st, more, err := s.finishStatement()
				if err != nil || !more {
					return st, err
				}
				if err := s.fill(); err != nil {
					return sqlStmt{}, err
				}
			}
		case evBackslash:
			for {
				more, err := s.metaCommand()
				if err != nil {
					return sqlStmt{}, err
				}
				if !more {
					break
				}
				if err := s.fill(); err != nil {
					return sqlStmt{}, err
				}
			}
		case evEnd:
			if s.start < 0 {
				return sqlStmt{}, io.EOF
			}
			// psql sends what is left at the end, even unfinished; the server judges it.
			return s.finishStatement0(len(s.buf))
		}
	}
}

// lex runs the lexer until something happens.
func (s *sqlScanner) lex() (lexEvent, error) {
	for {
		if s.pos >= len(s.buf) {
			if s.final() {
				return evEnd, nil
			}
			return evMore, nil
		}
		var ev lexEvent
		var err error
		switch s.state {
		case lexInitial:
			ev, err = s.lexInitial()
		case lexLineComment:
			ev = s.lexLineComment()
		case lexComment:
			ev = s.lexComment()
		case lexQuote, lexUnicode, lexBits, lexEscape:
			ev, err = s.lexString()
		case lexQuotedIdent:
			ev, err = s.lexQuotedIdent()
		case lexDollar:
			ev, err = s.lexDollarBody()
		}
		if err != nil || ev != evNone {
			return ev, err
		}
	}
}

// begin marks the statement's start at pos if it has not started yet. Whitespace and --
// comments before it are not part of it (as in psql).
func (s *sqlScanner) begin() {
	if s.start < 0 {
		s.start, s.startLine = s.pos, s.line
	}
}

func (s *sqlScanner) lexInitial() (lexEvent, error) {
	for s.pos < len(s.buf) {
		c := s.buf[s.pos]
		switch {
		case c == '\n':
			s.pos++
			s.line++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f':
			s.pos++
		case c == '-':
			if !s.have(2) {
				return evMore, nil
			}
			if s.at(1) == '-' {
				s.pos += 2
				s.state = lexLineComment
				return evNone, nil
			}
			if err := s.single(tokOther); err != nil {
				return evNone, err
			}
		case c == '/':
			if !s.have(2) {
				return evMore, nil
			}
			if s.at(1) == '*' {
				s.begin()
				s.pos += 2
				s.xcDepth = 0
				s.state = lexComment
				return evNone, nil
			}
			if err := s.single(tokOther); err != nil {
				return evNone, err
			}
		case c == '(':
			s.parenDepth++
			if err := s.single(tokPunct); err != nil {
				return evNone, err
			}
		case c == ')':
			if s.parenDepth > 0 {
				s.parenDepth--
			}
			if err := s.single(tokPunct); err != nil {
				return evNone, err
			}
		case c == ';':
			if err := s.single(tokPunct); err != nil {
				return evNone, err
			}
			if s.parenDepth == 0 && s.beginDepth == 0 {
				return evStatement, nil
			}
		case c == '\\':
			return evBackslash, nil
		case c == '\'':
			s.openQuote(1, s.plainString())
			return evNone, nil
		case c == '"':
			s.openQuote(1, lexQuotedIdent)
			return evNone, nil
		case c == '$':
			ev, err := s.lexDollarStart()
			if err != nil || ev != evNone {
				return ev, err
			}
			if s.state != lexInitial {
				return evNone, nil
			}
		case isDigit(int(c)) || c == '.':
			if c == '.' {
				if !s.have(2) {
					return evMore, nil
				}
				if !isDigit(s.at(1)) {
					if err := s.single(tokPunct); err != nil {
						return evNone, err
					}
					continue
				}
			}
			end, more := s.numberEnd()
			if more {
				return evMore, nil
			}
			if err := s.tokenTo(tokNumber, end); err != nil {
				return evNone, err
			}
		case isIdentStart(int(c)):
			ev, err := s.lexWord()
			if err != nil || ev != evNone {
				return ev, err
			}
			if s.state != lexInitial {
				return evNone, nil
			}
		default:
			kind := tokOther
			if c == ',' || c == '=' {
				kind = tokPunct
			}
			if err := s.single(kind); err != nil {
				return evNone, err
			}
		}
	}
	if s.final() {
		return evEnd, nil
	}
	return evMore, nil
}

// single consumes a one-byte token.
func (s *sqlScanner) single(kind tokKind) error { return s.tokenTo(kind, s.pos+1) }

// tokenTo consumes the token from pos to end.
func (s *sqlScanner) tokenTo(kind tokKind, end int) error {
	s.begin()
	from := s.pos
	s.pos = end
	return s.token(kind, from, end)
}

func (s *sqlScanner) plainString() lexState {
	if s.stdStrings {
		return lexQuote
	}
	return lexEscape
}

// openQuote consumes a quote's opening (prefix bytes) and enters state.
func (s *sqlScanner) openQuote(prefix int, state lexState) {
	s.begin()
	s.tokStart = s.pos - s.start
	s.pos += prefix
	s.state = state
}

// closeQuote ends the quoted token at pos.
func (s *sqlScanner) closeQuote(kind tokKind) error {
	s.state = lexInitial
	return s.token(kind, s.start+s.tokStart, s.pos)
}

// lexWord lexes an identifier or keyword, or the prefix of B'…', E'…', N'…', X'…', U&'…' and
// U&"…" constants, which only start where a word would.
func (s *sqlScanner) lexWord() (lexEvent, error) {
	if !s.have(3) {
		return evMore, nil
	}
	c1 := s.at(1)
	switch s.buf[s.pos] | 0x20 {
	case 'b', 'x':
		if c1 == '\'' {
			s.openQuote(2, lexBits)
			return evNone, nil
		}
	case 'e':
		if c1 == '\'' {
			s.openQuote(2, lexEscape)
			return evNone, nil
		}
	case 'n':
		if c1 == '\'' {
			// N'…' is a plain string after the N; the N is not an identifier.
			s.begin()
			s.pos++
			return evNone, nil
		}
	case 'u':
		if c1 == '&' {
			switch s.at(2) {
			case '\'':
				s.openQuote(3, lexUnicode)
			case '"':
				s.openQuote(3, lexQuotedIdent)
			default:
				// psql's xufailed: the U alone, not counted as an identifier.
				s.begin()
				s.pos++
			}
			return evNone, nil
		}
	}
	end := s.pos + 1
	for end < len(s.buf) && isIdentCont(int(s.buf[end])) {
		end++
	}
	if end == len(s.buf) && !s.final() {
		return evMore, nil
	}
	return evNone, s.tokenTo(tokWord, end)
}

// numberEnd is where the numeric token at pos ends, by PostgreSQL 16's rules: the longest
// of an integer (decimal, 0x, 0o, 0b, with _ separators), a numeric, a real, or any of
// them run on into identifier characters ("trailing junk", which the server refuses).
func (s *sqlScanner) numberEnd() (end int, more bool) {
	at := func(i int) int {
		c := s.at(i)
		if c < 0 && !s.final() {
			more = true
		}
		return c
	}
	decint := func(i int) int {
		if !isDigit(at(i)) {
			return i
		}
		i++
		for {
			if c := at(i); isDigit(c) {
				i++
			} else if c == '_' && isDigit(at(i+1)) {
				i += 2
			} else {
				return i
			}
		}
	}
	var bases [4]int // ends of the integer, numeric and real forms, relative to pos
	n := 0
	best := 0
	if s.buf[s.pos] == '.' {
		bases[n] = decint(1)
		n++
	} else {
		d := decint(0)
		bases[n] = d
		n++
		if s.buf[s.pos] == '0' {
			if radix := at(1) | 0x20; radix == 'x' || radix == 'o' || radix == 'b' {
				j := 2
				for {
					if c := at(j); isRadixDigit(c, radix) {
						j++
					} else if c == '_' && isRadixDigit(at(j+1), radix) {
						j += 2
					} else {
						break
					}
				}
				if j == 2 && at(2) == '_' {
					j = 3
				}
				best = max(best, j)
			}
		}
		if at(d) == '.' && at(d+1) != '.' { // 1..10 is 1, .., 10
			bases[n] = decint(d + 1)
			n++
		}
	}
	for i := range n {
		e := bases[i]
		if at(e)|0x20 != 'e' {
			continue
		}
		if c := at(e + 1); c == '+' || c == '-' {
			if isDigit(at(e + 2)) {
				bases[n] = decint(e + 2)
				n++
			} else {
				best = max(best, e+2)
			}
		} else if isDigit(c) {
			bases[n] = decint(e + 1)
			n++
		}
		break // one exponent at most: the integer and numeric forms cannot both have one
	}
	for i := range n {
		e := bases[i]
		best = max(best, e)
		if isIdentStart(at(e)) {
			e++
			for isIdentCont(at(e)) {
				e++
			}
			best = max(best, e)
		}
	}
	return s.pos + best, more
}

// lexDollarStart lexes what starts with $: a parameter ($1, and $1abc run on), a dollar
// quote's opening ($$ or $tag$), or a lone $.
func (s *sqlScanner) lexDollarStart() (lexEvent, error) {
	if !s.have(2) {
		return evMore, nil
	}
	c1 := s.at(1)
	switch {
	case isDigit(c1):
		end := s.pos + 2
		for end < len(s.buf) && isDigit(int(s.buf[end])) {
			end++
		}
		if end < len(s.buf) && isIdentStart(int(s.buf[end])) {
			for end < len(s.buf) && isIdentCont(int(s.buf[end])) {
				end++
			}
		}
		if end == len(s.buf) && !s.final() {
			return evMore, nil
		}
		return evNone, s.tokenTo(tokOther, end)
	case c1 == '$':
		s.dollarTag = append(s.dollarTag[:0], "$$"...)
		s.openQuote(2, lexDollar)
		return evNone, nil
	case isIdentStart(c1):
		end := s.pos + 2
		for end < len(s.buf) && isDollarTagCont(int(s.buf[end])) {
			end++
		}
		if end == len(s.buf) && !s.final() {
			return evMore, nil
		}
		if end < len(s.buf) && s.buf[end] == '$' {
			s.dollarTag = append(s.dollarTag[:0], s.buf[s.pos:end+1]...)
			s.openQuote(end+1-s.pos, lexDollar)
			return evNone, nil
		}
	}
	// A $ that opens nothing ($abc without its closing $): psql consumes the $ alone.
	return evNone, s.single(tokOther)
}

func (s *sqlScanner) lexLineComment() lexEvent {
	i := bytes.IndexAny(s.buf[s.pos:], "\n\r")
	if i < 0 {
		s.pos = len(s.buf)
		return evNone // lex decides: the end of the dump, or refill
	}
	s.pos += i // the line end is whitespace for INITIAL
	s.state = lexInitial
	return evNone
}

func (s *sqlScanner) lexComment() lexEvent {
	for s.pos < len(s.buf) {
		i := bytes.IndexAny(s.buf[s.pos:], "*/")
		if i < 0 {
			s.advance(len(s.buf) - s.pos)
			return evNone
		}
		s.advance(i)
		if !s.have(2) {
			return evMore
		}
		c, c1 := s.buf[s.pos], s.at(1)
		switch {
		case c == '/' && c1 == '*':
			s.xcDepth++
			s.pos += 2
		case c == '*' && c1 == '/':
			s.pos += 2
			if s.xcDepth == 0 {
				s.state = lexInitial
				return evNone
			}
			s.xcDepth--
		default:
			s.pos++
		}
	}
	return evNone
}

func (s *sqlScanner) lexString() (lexEvent, error) {
	for s.pos < len(s.buf) {
		rest := s.buf[s.pos:]
		var i int
		if s.state == lexEscape {
			i = bytes.IndexAny(rest, `\'`)
		} else {
			i = bytes.IndexByte(rest, '\'')
		}
		if i < 0 {
			s.advance(len(rest))
			return evNone, nil
		}
		s.advance(i)
		if s.buf[s.pos] == '\\' { // lexEscape only: the next byte is escaped, whatever it is
			if !s.have(2) {
				return evMore, nil
			}
			s.advance(min(2, len(s.buf)-s.pos))
			continue
		}
		if s.state != lexBits {
			if !s.have(2) {
				return evMore, nil
			}
			if s.at(1) == '\'' {
				s.pos += 2
				continue
			}
		}
		next, ok, more := s.quoteContinues(s.pos + 1)
		if more {
			return evMore, nil
		}
		if ok {
			s.advance(next - s.pos)
			continue
		}
		s.pos++
		return evNone, s.closeQuote(tokString)
	}
	return evNone, nil
}

// quoteContinues reports whether the string closed just before i continues: SQL joins
// '…' <whitespace holding a newline> '…' into one constant, lexed in the first one's state.
// next is just past the continuation's opening quote. Here the scanner follows the server
// rather than psql: psql lexes a file line by line without the newlines, so it never
// joins such strings, and the server then finds what psql sent unterminated.
func (s *sqlScanner) quoteContinues(i int) (next int, ok, more bool) {
	b := s.buf
	sawNewline := false
	for {
		if i >= len(b) {
			return 0, false, !s.final()
		}
		switch c := b[i]; {
		case c == ' ' || c == '\t' || c == '\f':
			i++
		case c == '\n' || c == '\r':
			sawNewline = true
			i++
		case c == '-':
			if i+1 >= len(b) {
				return 0, false, !s.final()
			}
			if b[i+1] != '-' {
				return 0, false, false
			}
			j := bytes.IndexAny(b[i:], "\n\r")
			if j < 0 {
				// A comment running to the end: no newline follows it.
				return 0, false, !s.final()
			}
			i += j
		case c == '\'' && sawNewline:
			return i + 1, true, false
		default:
			return 0, false, false
		}
	}
}

func (s *sqlScanner) lexQuotedIdent() (lexEvent, error) {
	for s.pos < len(s.buf) {
		i := bytes.IndexByte(s.buf[s.pos:], '"')
		if i < 0 {
			s.advance(len(s.buf) - s.pos)
			return evNone, nil
		}
		s.advance(i)
		if !s.have(2) {
			return evMore, nil
		}
		if s.at(1) == '"' {
			s.pos += 2
			continue
		}
		s.pos++
		return evNone, s.closeQuote(tokQuoted)
	}
	return evNone, nil
}

func (s *sqlScanner) lexDollarBody() (lexEvent, error) {
	for s.pos < len(s.buf) {
		i := bytes.IndexByte(s.buf[s.pos:], '$')
		if i < 0 {
			s.advance(len(s.buf) - s.pos)
			return evNone, nil
		}
		s.advance(i)
		if !s.have(len(s.dollarTag)) {
			return evMore, nil
		}
		if bytes.HasPrefix(s.buf[s.pos:], s.dollarTag) {
			s.pos += len(s.dollarTag)
			return evNone, s.closeQuote(tokString)
		}
		s.pos++
	}
	return evNone, nil
}

// token records a token of the statement: the first few, psql's BEGIN … END heuristic
// for SQL-standard function bodies, the COPY form, and the statements refused outright.
func (s *sqlScanner) token(kind tokKind, from, to int) error {
	text := s.buf[from:to]
	if kind == tokWord {
		s.trackBeginEnd(text)
	}
	if s.ntok < firstTokens {
		t := sqlToken{kind: kind}
		if len(text) <= 64 {
			if kind == tokWord {
				t.text = lowerASCII(text)
			} else {
				t.text = string(text)
			}
		}
		s.toks[s.ntok] = t
	}
	s.ntok++
	s.trackCopy(kind, text, from, to)
	if s.ntok == 2 {
		return s.refuseStatement()
	}
	return nil
}

// trackBeginEnd follows psql: in a statement that starts CREATE [OR REPLACE] FUNCTION or
// PROCEDURE, BEGIN (and CASE inside it) opens and END closes a body whose semicolons do
// not end the statement, outside parentheses.
func (s *sqlScanner) trackBeginEnd(word []byte) {
	if s.idCount == 0 {
		s.ids = [4]byte{}
	}
	if len(word) <= len("procedure") {
		for _, kw := range [...]string{"create", "function", "procedure", "or", "replace"} {
			if bytes.EqualFold(word, []byte(kw)) {
				if s.idCount < len(s.ids) {
					s.ids[s.idCount] = kw[0]
				}
				break
			}
		}
	}
	s.idCount++
	ids := s.ids
	if ids[0] != 'c' || s.parenDepth != 0 ||
		!(ids[1] == 'f' || ids[1] == 'p' || ids[1] == 'o' && ids[2] == 'r' && (ids[3] == 'f' || ids[3] == 'p')) {
		return
	}
	switch {
	case bytes.EqualFold(word, []byte("begin")):
		s.beginDepth++
	case bytes.EqualFold(word, []byte("case")):
		if s.beginDepth >= 1 {
			s.beginDepth++
		}
	case bytes.EqualFold(word, []byte("end")):
		if s.beginDepth > 0 {
			s.beginDepth--
		}
	}
}

func (s *sqlScanner) trackCopy(kind tokKind, text []byte, from, to int) {
	name := kind == tokWord || kind == tokQuoted
	punct := func(c byte) bool { return kind == tokPunct && text[0] == c }
	word := func(w string) bool { return kind == tokWord && bytes.EqualFold(text, []byte(w)) }
	next := copyNot
	switch s.copyState {
	case copyNone:
		if word("copy") {
			next = copyTable
		}
	case copyTable:
		if name {
			s.tableFrom, s.tableTo = from-s.start, to-s.start
			next = copyAfterName
		}
	case copyAfterName:
		switch {
		case punct('.'):
			next = copyQualified
		case punct('('):
			next = copyColumn
		case word("from"):
			next = copyStdin
		}
	case copyQualified:
		if name {
			s.tableTo = to - s.start
			next = copyAfterTable
		}
	case copyAfterTable:
		switch {
		case punct('('):
			next = copyColumn
		case word("from"):
			next = copyStdin
		}
	case copyColumn:
		if name {
			next = copyAfterColumn
		}
	case copyAfterColumn:
		switch {
		case punct(','):
			next = copyColumn
		case punct(')'):
			next = copyFrom
		}
	case copyFrom:
		if word("from") {
			next = copyStdin
		}
	case copyStdin:
		if word("stdin") {
			next = copySemicolon
		}
	case copySemicolon:
		if punct(';') {
			next = copyMatched
		}
	}
	s.copyState = next
}

// refuseStatement refuses, once its first two tokens are known, a statement that acts
// outside the scratch database and that a single-database dump never holds.
func (s *sqlScanner) refuseStatement() error {
	a, b := s.toks[0], s.toks[1]
	if a.kind != tokWord || b.kind != tokWord {
		return nil
	}
	if b.text == "database" && (a.text == "create" || a.text == "drop" || a.text == "alter") ||
		a.text == "alter" && b.text == "system" {
		return fmt.Errorf("%w: line %d of the SQL dump holds %s %s, which acts outside the database being restored: "+
			"a single-database dump never does (was it made with pg_dump -C or pg_dumpall?)",
			ErrPreflight, s.startLine, upperASCII(a.text), upperASCII(b.text))
	}
	return nil
}

// finishStatement returns the statement that ended at pos. A COPY … FROM stdin in
// pg_dump's form must end its line after the ';': its data starts on the next line.
func (s *sqlScanner) finishStatement() (st sqlStmt, more bool, err error) {
	end := s.pos
	if s.copyState == copyMatched {
		i := s.pos
		for i < len(s.buf) && (s.buf[i] == ' ' || s.buf[i] == '\t' || s.buf[i] == '\f' || s.buf[i] == '\r') {
			i++
		}
		if i == len(s.buf) && !s.final() {
			return sqlStmt{}, true, nil
		}
		if i == len(s.buf) || s.buf[i] == '\n' {
			st.copy = true
			st.table = printable(s.buf[s.start+s.tableFrom:s.start+s.tableTo], 200)
			s.pos = i
			if i < len(s.buf) {
				s.pos++
				s.line++
			}
			st.dataLine = s.line
		}
	}
	st0, err := s.finishStatement0(end)
	st0.copy, st0.table, st0.dataLine = st.copy, st.table, st.dataLine
	return st0, false, err
}

// finishStatement0 returns the statement from start to end and resets the lexer for the
// next one.
func (s *sqlScanner) finishStatement0(end int) (sqlStmt, error) {
	st := sqlStmt{text: s.buf[s.start:end], line: s.startLine, toks: s.toks}
	if s.ntok < firstTokens {
		clear(st.toks[s.ntok:])
	}
	if end-s.start > s.max {
		return sqlStmt{}, s.tooLong(st.line)
	}
	s.start, s.state, s.parenDepth, s.beginDepth, s.idCount, s.ntok, s.copyState = -1, lexInitial, 0, 0, 0, 0, copyNone
	if bytes.IndexByte(st.text, 0) >= 0 {
		return sqlStmt{}, fmt.Errorf("%w: the statement at line %d of the SQL dump holds a NUL byte, which no SQL text can", ErrPreflight, st.line)
	}
	return st, nil
}

// metaCommand judges the backslash at pos: pg_dump's own \restrict KEY and \unrestrict
// KEY lines are skipped (they only restrict psql, and nothing here runs meta-commands);
// anything else is refused.
func (s *sqlScanner) metaCommand() (more bool, err error) {
	const longest = 4 << 10
	rest := s.buf[s.pos:]
	line := rest[:min(len(rest), longest)]
	newline := false
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line, newline = line[:i], true
	} else if len(rest) < longest && !s.final() {
		return true, nil
	}
	atLineStart := s.pos == 0 && s.offset == 0 || s.pos > 0 && s.buf[s.pos-1] == '\n'
	if s.start < 0 && atLineStart && isRestrictLine(line) {
		s.pos += len(line)
		if newline {
			s.pos++
			s.line++
		}
		return false, nil
	}
	return false, fmt.Errorf("%w: line %d of the SQL dump holds psql's %s meta-command; drconsole never runs meta-commands from a backup",
		ErrPreflight, s.line, metaName(line))
}

// isRestrictLine matches `\restrict KEY` or `\unrestrict KEY`, KEY alphanumeric, as
// pg_dump (15.14, 16.10, 17.6 and later) writes them.
func isRestrictLine(line []byte) bool {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	rest, ok := bytes.CutPrefix(line, []byte(`\restrict `))
	if !ok {
		rest, ok = bytes.CutPrefix(line, []byte(`\unrestrict `))
	}
	if !ok || len(rest) == 0 || len(rest) > 256 {
		return false
	}
	for _, c := range rest {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// metaName is the meta-command at the start of line (psql reads its name up to
// whitespace or the next backslash), safe to print: it comes from a hostile file.
func metaName(line []byte) string {
	name := line[1:]
	if i := bytes.IndexAny(name, " \t\n\r\f\\"); i >= 0 {
		name = name[:i]
	}
	cut := len(name) > metaShown
	name = name[:min(len(name), metaShown)]
	for _, c := range name {
		if c < 0x21 || c > 0x7e {
			return strconv.QuoteToASCII(`\` + string(name))
		}
	}
	if cut {
		return `\` + string(name) + "…"
	}
	return `\` + string(name)
}

// copyData reads the data lines of the COPY just returned by next, without the `\.` line
// that ends them. Safe for another goroutine (pgconn's CopyFrom reads in its own); after
// close, the scanner is the caller's alone again.
func (s *sqlScanner) copyData() *copyData { return &copyData{s: s} }

type copyData struct {
	s       *sqlScanner
	mu      sync.Mutex
	midLine bool  // pos is inside a data line, not at its start
	done    bool  // the `\.` line or the end of the dump was reached
	closed  bool  // CopyFrom returned: no more reads
	err     error // the dump could not be read
}

var errCopyClosed = errors.New("COPY data read after the COPY ended")

func (d *copyData) Read(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return 0, errCopyClosed
	case d.err != nil:
		return 0, d.err
	case d.done:
		return 0, io.EOF
	}
	s := d.s
	n := 0
	for n < len(p) {
		rest := s.buf[s.pos:]
		if !d.midLine {
			end, decided := copyEnd(rest, s.final())
			if !decided {
				if n > 0 {
					break
				}
				if err := s.fill(); err != nil {
					d.err = err
					return 0, err
				}
				continue
			}
			if end > 0 || len(rest) == 0 {
				s.advance(end)
				d.done = true
				if n == 0 {
					return 0, io.EOF
				}
				break
			}
		}
		if len(rest) == 0 {
			if s.final() { // the last line had no newline
				d.done = true
				if n == 0 {
					return 0, io.EOF
				}
				break
			}
			if n > 0 {
				break
			}
			if err := s.fill(); err != nil {
				d.err = err
				return 0, err
			}
			continue
		}
		chunk := rest[:min(len(rest), len(p)-n)]
		if i := bytes.IndexByte(chunk, '\n'); i >= 0 {
			chunk = chunk[:i+1]
			d.midLine = false
			s.line++
		} else {
			d.midLine = true
		}
		n += copy(p[n:], chunk)
		s.pos += len(chunk)
	}
	return n, nil
}

// close ends reading; it waits for a read in progress.
func (d *copyData) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
}

// copyEnd looks at the start of a data line: end is the length of the `\.` line that ends
// COPY data (with \n or \r\n; at the end of the dump without), 0 for a data line or the
// end; decided is false when more bytes are needed to tell.
func copyEnd(rest []byte, final bool) (end int, decided bool) {
	for i, want := range []byte{'\\', '.'} {
		if i == len(rest) {
			return 0, final
		}
		if rest[i] != want {
			return 0, true
		}
	}
	switch {
	case len(rest) == 2:
		if final {
			return 2, true
		}
		return 0, false
	case rest[2] == '\n':
		return 3, true
	case rest[2] != '\r':
		return 0, true
	case len(rest) == 3:
		if final {
			return 3, true
		}
		return 0, false
	case rest[3] == '\n':
		return 4, true
	}
	return 0, true
}

// scanSQLHead refuses, before anything is touched, a dump whose head (at most the first
// MiB, as much as r buffers) already holds a meta-command other than \restrict and
// \unrestrict, or a statement refused outright. It cannot ask the server about
// standard_conforming_strings, so it lexes the head twice, with it on and off, following
// the dump's own SET standard_conforming_strings statements, and refuses if either
// reading does. COPY data running past the head is fine.
func scanSQLHead(r *bufio.Reader) error {
	// bufio says io.EOF only when asked for no more than it can buffer.
	head, err := r.Peek(min(1<<20, r.Size()))
	whole := err == io.EOF
	for _, on := range []bool{true, false} {
		s := newSQLScanner(bytes.NewReader(head))
		s.head, s.stdStrings = !whole, on
		if err := s.scanHead(); err != nil {
			return err
		}
	}
	return nil
}

func (s *sqlScanner) scanHead() error {
	for {
		st, err := s.next()
		if err == io.EOF || errors.Is(err, errHeadEnd) {
			return nil
		}
		if err != nil {
			return err
		}
		if st.copy {
			if _, err := io.Copy(io.Discard, s.copyData()); err != nil {
				if errors.Is(err, errHeadEnd) {
					return nil
				}
				return err
			}
			continue
		}
		if on, ok := setsStandardStrings(st.toks); ok {
			s.stdStrings = on
		}
	}
}

// setsStandardStrings reads SET [SESSION|LOCAL] standard_conforming_strings {=|TO} value
// and RESET: what the head scan follows in place of the server's word.
func setsStandardStrings(t [firstTokens]sqlToken) (on, ok bool) {
	i := 1
	switch {
	case t[0].kind == tokWord && t[0].text == "reset":
		return true, t[1].text == "standard_conforming_strings" || t[1].text == "all"
	case t[0].kind != tokWord || t[0].text != "set":
		return false, false
	}
	if t[i].text == "session" || t[i].text == "local" {
		i++
	}
	if t[i].kind != tokWord || t[i].text != "standard_conforming_strings" || i+2 >= len(t) {
		return false, false
	}
	if t[i+1].text != "=" && t[i+1].text != "to" {
		return false, false
	}
	v := t[i+2].text
	if t[i+2].kind == tokString && len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		v = lowerASCII([]byte(v[1 : len(v)-1]))
	}
	switch v {
	case "on", "true", "yes", "1", "default":
		return true, true
	case "off", "false", "no", "0":
		return false, true
	}
	return false, false
}

func isDigit(c int) bool { return '0' <= c && c <= '9' }

// isIdentStart: [A-Za-z\200-\377_] in psqlscan.l.
func isIdentStart(c int) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c >= 0x80
}

// isIdentCont: identifiers run on through digits and $ too, so a$b$ is no dollar quote.
func isIdentCont(c int) bool { return isIdentStart(c) || isDigit(c) || c == '$' }

func isDollarTagCont(c int) bool { return isIdentStart(c) || isDigit(c) }

func isRadixDigit(c, radix int) bool {
	switch radix {
	case 'x':
		return isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'f'
	case 'o':
		return '0' <= c && c <= '7'
	}
	return c == '0' || c == '1'
}

func lowerASCII(b []byte) string {
	out := []byte(string(b))
	for i, c := range out {
		if 'A' <= c && c <= 'Z' {
			out[i] = c + 'a' - 'A'
		}
	}
	return string(out)
}

func upperASCII(s string) string {
	out := []byte(s)
	for i, c := range out {
		if 'a' <= c && c <= 'z' {
			out[i] = c - ('a' - 'A')
		}
	}
	return string(out)
}

// printable is b on one line, control characters and invalid UTF-8 replaced, at most n
// bytes: text from a backup or from the server that a terminal will show.
func printable(b []byte, n int) string {
	out := make([]rune, 0, min(len(b), n))
	size := 0
	for _, r := range string(b) {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			r = ' '
		case r < 0x20 || r == 0x7f || 0x80 <= r && r < 0xa0 || r == 0xfffd:
			r = '?'
		}
		if size += len(string(r)); size > n {
			out = append(out, '…')
			break
		}
		out = append(out, r)
	}
	return string(out)
}
