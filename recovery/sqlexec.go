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
// protocol (results discarded), COPY data through CopyFrom, and COMMIT only once r has
// ended. onTable (may be nil) is called after each COPY with the count so far and the
// table's name. On any failure nothing is committed; the caller drops the database.
//
// Errors: r's read errors as they are; ErrPreflight for what the dump may not do
// (meta-commands, other databases, ending the transaction); ErrRestoreTool with the dump's
// line for the server's refusal; the context's error when ctx ends.
func execPlain(ctx context.Context, pc *pgconn.PgConn, r io.Reader, onTable func(done int, table string)) (err error) {
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
	tables := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// The lexer reads '…' the way the server will: standard_conforming_strings as the
		// dump's statements so far left it.
		sc.stdStrings = pc.ParameterStatus("standard_conforming_strings") == "on"
		if enc := pc.ParameterStatus("client_encoding"); unsafeClientEncoding(enc) {
			return fmt.Errorf("%w: the SQL dump sets client_encoding %s before line %d; in that encoding a byte of a "+
				"multibyte character can pass for a quote or backslash, so drconsole does not replay it (dump with -E UTF8)",
				ErrPreflight, printable([]byte(enc), 40), sc.line)
		}
		st, err := sc.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
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
		if pc.TxStatus() != 'T' {
			return fmt.Errorf("%w: the statement at line %d of the SQL dump ends the transaction the restore runs in "+
				"(COMMIT, ROLLBACK or END); drconsole restores a dump as one transaction", ErrPreflight, st.line)
		}
	}
	if err := x.query("COMMIT", sc.line); err != nil {
		return err
	}
	if pc.TxStatus() != 'I' {
		return fmt.Errorf("%w: COMMIT at the end of the SQL dump left the transaction open", ErrRestoreTool)
	}
	return nil
}

// plainRun is one replay on one connection.
type plainRun struct {
	ctx   context.Context
	pc    *pgconn.PgConn
	clean bool // no statement in flight: the connection can take a ROLLBACK
}

// query runs one statement with the simple query protocol and discards its results.
// A COPY … FROM stdin that is not in pg_dump's form gets no data: it is failed, where
// pgconn's Exec would wait for data forever.
func (x *plainRun) query(sql string, line int) error {
	if err := x.ctx.Err(); err != nil {
		return err
	}
	fe := x.pc.Frontend()
	x.clean = false
	fe.SendQuery(&pgproto3.Query{String: sql})
	if err := fe.Flush(); err != nil {
		return x.connErr(err, line)
	}
	var first *pgconn.PgError
	for {
		msg, err := x.pc.ReceiveMessage(x.ctx)
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) { // a FATAL error: pgconn closed the connection
				return x.serverErr(pe, line, 0)
			}
			return x.connErr(err, line)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			if first == nil {
				first = pgconn.ErrorResponseToPgError(m)
			}
		case *pgproto3.CopyInResponse:
			fe.Send(&pgproto3.CopyFail{Message: "drconsole feeds data only to a COPY … FROM stdin as pg_dump writes it: no options, nothing after it on its line"})
			if err := fe.Flush(); err != nil {
				return x.connErr(err, line)
			}
		case *pgproto3.ReadyForQuery:
			x.clean = true
			if first != nil {
				return x.serverErr(first, line, 0)
			}
			return nil
		}
	}
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
