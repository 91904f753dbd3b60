package recovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// A plain SQL dump is replayed here, not by psql: its statements go to the scratch
// database over one connection, so nothing in the backup can run a meta-command, reach
// a shell or a file, or open another connection.

// connectPg opens a low-level connection to database, recording the server's warnings
// in notices (which may be nil).
func (c *Conn) connectPg(ctx context.Context, database string, notices *noticeLog) (*pgconn.PgConn, error) {
	cfg := c.cfg.Copy()
	cfg.Database = database
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 15 * time.Second
	}
	if notices != nil {
		cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices.add(n) }
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, connectErr(c, database, err)
	}
	return pc, nil
}

// noticeLog keeps the server's WARNING notices, one line each, the first maxNotices.
type noticeLog struct {
	mu    sync.Mutex
	lines []string
}

const maxNotices = 50

func (l *noticeLog) add(n *pgconn.Notice) {
	severity := n.SeverityUnlocalized
	if severity == "" {
		severity = n.Severity
	}
	if severity != "WARNING" {
		return
	}
	line := printable([]byte("WARNING: "+n.Message), 500)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) < maxNotices {
		l.lines = append(l.lines, line)
	}
}

func (l *noticeLog) warnings() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// execPlain replays the plain SQL dump r on pc as one transaction, as psql
// --single-transaction with ON_ERROR_STOP would: statements over the simple query
// protocol (results discarded; runs of INSERT statements several to a message), COPY
// data through CopyFrom, and COMMIT only once r has ended. onTable (may be nil) is
// called after each COPY with the count so far and the table's name. On any failure
// nothing is committed; the caller drops the database.
//
// Errors: r's read errors as they are; ErrPreflight for what the dump may not do
// (meta-commands, other databases, ending the transaction); ErrRestoreTool with the dump's
// line for the server's refusal; the context's error when ctx ends.
//
// guard (may be nil) sees every statement that is neither COPY nor INSERT before it is
// sent, and may skip it (drconsole does that part itself) or stop the replay.
func execPlain(ctx context.Context, pc *pgconn.PgConn, r io.Reader, onTable func(done int, table string), guard plainGuard) (err error) {
	x := &plainRun{ctx: ctx, pc: pc, clean: true}
	// Writes are the one wait pgconn does not watch ctx for here: a cancel must end them too.
	stopDeadline := context.AfterFunc(ctx, func() { _ = pc.Conn().SetDeadline(time.Now()) })
	defer func() {
		if err != nil {
			x.abort(stopDeadline)
			if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
				err = fmt.Errorf("%w (%v)", ctx.Err(), err)
			}
		}
		stopDeadline()
	}()

	if err := x.query("BEGIN", 0); err != nil {
		return err
	}
	sc := newSQLScanner(r)
	var batch insertBatch
	tables := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := x.checkEncoding(sc.line); err != nil {
			return err
		}
		// The lexer reads '…' the way the server will: standard_conforming_strings as the
		// dump's statements so far left it.
		sc.stdStrings = pc.ParameterStatus("standard_conforming_strings") == "on"
		st, err := sc.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if !st.copy && st.toks[0].kind == tokWord && st.toks[0].text == "insert" {
			batch.add(st)
			if batch.full() {
				if err := x.flush(&batch, sc.stdStrings); err != nil {
					return err
				}
			}
			continue
		}
		if err := x.flush(&batch, sc.stdStrings); err != nil {
			return err
		}
		if guard != nil && !st.copy {
			skip, err := guard(ctx, st)
			if err != nil {
				return err
			}
			if skip {
				continue
			}
		}
		if st.copy {
			if err := x.copyIn(sc, st); err != nil {
				return err
			}
			tables++
			if onTable != nil {
				onTable(tables, st.table)
			}
		} else if err := x.query(string(st.text), st.line); err != nil {
			return err
		}
		if err := x.checkTx(st.line); err != nil {
			return err
		}
	}
	if err := x.flush(&batch, sc.stdStrings); err != nil {
		return err
	}
	if err := x.query("COMMIT", sc.line); err != nil {
		return err
	}
	if pc.TxStatus() != 'I' {
		return fmt.Errorf("%w: COMMIT at the end of the SQL dump left the transaction open", ErrRestoreTool)
	}
	return nil
}

// plainGuard decides about one statement of a plain dump before it is run: skip is true
// when drconsole does its part itself.
type plainGuard func(ctx context.Context, st sqlStmt) (skip bool, err error)

// plainRun is one replay on one connection.
type plainRun struct {
	ctx   context.Context
	pc    *pgconn.PgConn
	clean bool // no statement in flight: the connection can take a ROLLBACK
}

// checkEncoding refuses a client encoding the lexer cannot follow.
func (x *plainRun) checkEncoding(line int) error {
	if enc := x.pc.ParameterStatus("client_encoding"); unsafeClientEncoding(enc) {
		return fmt.Errorf("%w: the SQL dump sets client_encoding %s before line %d; in that encoding a byte of a "+
			"multibyte character can pass for a quote or backslash, so drconsole does not replay it (dump with -E UTF8)",
			ErrPreflight, printable([]byte(enc), 40), line)
	}
	return nil
}

// checkTx refuses a dump that ended the transaction the restore runs in.
func (x *plainRun) checkTx(line int) error {
	if x.pc.TxStatus() != 'T' {
		return fmt.Errorf("%w: the statement at line %d of the SQL dump ends the transaction the restore runs in "+
			"(COMMIT, ROLLBACK or END); drconsole restores a dump as one transaction", ErrPreflight, line)
	}
	return nil
}

// query runs one statement with the simple query protocol and discards its results.
func (x *plainRun) query(sql string, line int) error {
	_, pe, err := x.send(sql)
	switch {
	case err != nil:
		return x.connErr(err, line)
	case pe != nil:
		return x.serverErr(pe, line, 0)
	}
	return nil
}

// send runs sql, one statement or several, with the simple query protocol and discards
// the results; done counts the statements that completed before the server's first
// error pe. A COPY … FROM stdin that is not in pg_dump's form gets no data: it is failed,
// where pgconn's Exec would wait for data forever.
func (x *plainRun) send(sql string) (done int, pe *pgconn.PgError, err error) {
	if err := x.ctx.Err(); err != nil {
		return 0, nil, err
	}
	fe := x.pc.Frontend()
	x.clean = false
	fe.SendQuery(&pgproto3.Query{String: sql})
	if err := fe.Flush(); err != nil {
		return 0, nil, err
	}
	for {
		msg, err := x.pc.ReceiveMessage(x.ctx)
		if err != nil {
			if errors.As(err, &pe) { // a FATAL error: pgconn closed the connection
				return done, pe, nil
			}
			return done, nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.CommandComplete, *pgproto3.EmptyQueryResponse:
			if pe == nil {
				done++
			}
		case *pgproto3.ErrorResponse:
			if pe == nil {
				pe = pgconn.ErrorResponseToPgError(m)
			}
		case *pgproto3.CopyInResponse:
			fe.Send(&pgproto3.CopyFail{Message: "drconsole feeds data only to a COPY … FROM stdin as pg_dump writes it: no options, nothing after it on its line"})
			if err := fe.Flush(); err != nil {
				return done, nil, err
			}
		case *pgproto3.ReadyForQuery:
			x.clean = true
			return done, pe, nil
		}
	}
}

// insertBatch holds consecutive INSERT statements (pg_dump --inserts writes one a row)
// to send in one message: a round trip each would make such a dump slower than psql.
// The server parses a whole message before it runs any of it, so every statement of a
// batch is parsed with the standard_conforming_strings the lexer read it with.
type insertBatch struct {
	sql   []byte
	lines []int // the line each statement starts on
	ends  []int // where each ends in sql
}

const (
	batchStatements = 1000
	batchBytes      = 256 << 10
)

func (b *insertBatch) add(st sqlStmt) {
	if len(b.sql) > 0 {
		b.sql = append(b.sql, '\n')
	}
	b.sql = append(b.sql, st.text...)
	b.lines = append(b.lines, st.line)
	b.ends = append(b.ends, len(b.sql))
}

func (b *insertBatch) full() bool { return len(b.lines) >= batchStatements || len(b.sql) >= batchBytes }

// flush runs the batch. The statement read after it was lexed with std; a batch that
// changed standard_conforming_strings (only a function it calls can) is refused, since
// that statement would then be parsed differently from how it was read.
func (x *plainRun) flush(b *insertBatch, std bool) error {
	if len(b.lines) == 0 {
		return nil
	}
	defer func() { b.sql, b.lines, b.ends = b.sql[:0], b.lines[:0], b.ends[:0] }()
	if len(b.lines) == 1 {
		if err := x.query(string(b.sql), b.lines[0]); err != nil {
			return err
		}
	} else {
		done, pe, err := x.send(string(b.sql))
		switch {
		case err != nil:
			return x.connErr(err, b.lines[min(done, len(b.lines)-1)])
		case pe != nil:
			return x.batchErr(b, done, pe)
		}
	}
	last := b.lines[len(b.lines)-1]
	if err := x.checkTx(last); err != nil {
		return err
	}
	if err := x.checkEncoding(last); err != nil {
		return err
	}
	if (x.pc.ParameterStatus("standard_conforming_strings") == "on") != std {
		return fmt.Errorf("%w: the INSERT statements up to line %d of the SQL dump changed standard_conforming_strings", ErrPreflight, last)
	}
	return nil
}

// batchErr names the statement of the batch the server refused: the one after those
// that completed, or, for a syntax error (nothing ran), the one its position falls in.
func (x *plainRun) batchErr(b *insertBatch, done int, pe *pgconn.PgError) error {
	i := done
	if done == 0 && pe.Position > 0 {
		off, ok := charOffset(b.sql, int(pe.Position)-1, x.pc.ParameterStatus("client_encoding"))
		if !ok {
			return fmt.Errorf("%w: SQL dump lines %d to %d: %s", ErrRestoreTool, b.lines[0], b.lines[len(b.lines)-1], printable([]byte(pgMessage(pe)), 500))
		}
		for i < len(b.ends)-1 && off >= b.ends[i] {
			i++
		}
	}
	return x.serverErr(pe, b.lines[min(i, len(b.lines)-1)], 0)
}

// charOffset is the byte offset of the n-th character of sql in the client encoding, as
// the server counts error positions; ok is false for the multibyte encodings other than
// UTF8, which it does not decode.
func charOffset(sql []byte, n int, encoding string) (int, bool) {
	switch strings.ToUpper(encoding) {
	case "UTF8":
		off := 0
		for ; n > 0 && off < len(sql); n-- {
			_, size := utf8.DecodeRune(sql[off:])
			off += size
		}
		return off, true
	case "EUC_JP", "EUC_CN", "EUC_KR", "EUC_TW", "EUC_JIS_2004", "MULE_INTERNAL":
		return 0, false
	}
	return min(n, len(sql)), true
}

// copyIn streams the data of the COPY statement st to the server.
func (x *plainRun) copyIn(sc *sqlScanner, st sqlStmt) error {
	sql := string(st.text)
	data := sc.copyData()
	x.clean = false
	_, err := x.pc.CopyFrom(x.ctx, data, sql)
	data.close() // CopyFrom may return before its reader goroutine: wait for it
	var pe *pgconn.PgError
	isPg := errors.As(err, &pe)
	x.clean = err == nil || isPg && !x.pc.IsClosed()
	switch {
	case data.err != nil:
		return data.err // the dump could not be read; the server only saw the copy fail
	case isPg:
		return x.serverErr(pe, st.line, st.dataLine)
	case err != nil:
		return x.connErr(err, st.line)
	}
	return nil
}

// serverErr is the server's refusal of the statement at line (or of COPY data from
// dataLine on), in one line.
func (x *plainRun) serverErr(pe *pgconn.PgError, line, dataLine int) error {
	if dataLine > 0 {
		if n, ok := copyErrLine(pe.Where); ok {
			line = dataLine + n - 1
		}
	}
	return fmt.Errorf("%w: SQL dump line %d: %s", ErrRestoreTool, line, printable([]byte(pgMessage(pe)), 500))
}

// copyErrLine reads the data line number from a COPY error's context,
// "COPY name, line N[, column c]: …".
func copyErrLine(where string) (int, bool) {
	i := strings.LastIndex(where, ", line ")
	if !strings.HasPrefix(where, "COPY ") || i < 0 {
		return 0, false
	}
	digits := where[i+len(", line "):]
	end := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' })
	if end >= 0 {
		digits = digits[:end]
	}
	n, err := strconv.Atoi(digits)
	return n, err == nil && n > 0
}

func (x *plainRun) connErr(err error, line int) error {
	if ctxErr := x.ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return fmt.Errorf("%w: the connection to the database being restored failed at SQL dump line %d: %s", ErrDatabase, line, redactErr(err))
}

// abort undoes the transaction, best effort, within a few seconds whatever happened to
// the caller's context. With a statement still in flight (a cancel) the connection is
// closed instead, which ends the transaction on the server just the same.
func (x *plainRun) abort(stopDeadline func() bool) {
	stopDeadline()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if x.pc.IsClosed() {
		return
	}
	if !x.clean {
		_ = x.pc.Close(ctx)
		return
	}
	_ = x.pc.Conn().SetDeadline(time.Time{})
	rb := &plainRun{ctx: ctx, pc: x.pc}
	if err := rb.query("ROLLBACK", 0); err != nil && !rb.clean {
		_ = x.pc.Close(ctx)
	}
}

// unsafeClientEncoding: the client-only encodings whose multibyte characters may hold
// ASCII bytes; psql lexes them specially, this lexer does not.
func unsafeClientEncoding(enc string) bool {
	switch strings.ToUpper(enc) {
	case "SJIS", "SHIFT_JIS_2004", "BIG5", "GBK", "UHC", "GB18030", "JOHAB":
		return true
	}
	return false
}
