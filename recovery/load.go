package recovery

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"drconsole/recovery/parallel"
	"drconsole/storage"
)

// feedSize is the size of each write into pg_restore's stdin: large writes starve it,
// 64 KiB keeps it fed (measured; see bench/).
const feedSize = 64 << 10

// Restore streams the backup into the scratch database, runs the checks there and,
// in ModeSwap, carries the live database's owner, grants and settings over to it. On any
// failure or cancel the scratch database is dropped and the live one is untouched. The
// last event reported is Final. The result is returned on failure too, for its checks.
// A restored copy waiting for its swap keeps the target's lock until Swap or Abandon.
func (p *Plan) Restore(ctx context.Context, rep Reporter) (*Restored, error) {
	interval := p.opts.Interval
	if interval == 0 {
		interval = ProgressInterval
	}
	rep = Throttle(orDiscard(rep), interval)
	start := time.Now()
	r := &Restored{Plan: p, Database: p.Scratch}
	created, err := p.restore(ctx, rep, r)
	if err != nil && created {
		rep.Report(Event{Time: time.Now(), Stage: StageCleanup, Message: fmt.Sprintf("dropping scratch database %s", p.Scratch)})
		if derr := dropDatabase(p.opts.Conn, p.Scratch); derr != nil {
			err = fmt.Errorf("%w; and the scratch database %s could not be dropped (%v): the next drconsole run lists it for dropping", err, p.Scratch, derr)
		} else {
			rep.Report(Event{Time: time.Now(), Stage: StageCleanup, Message: fmt.Sprintf("dropped scratch database %s; %s is untouched", p.Scratch, p.Target)})
		}
	}
	if err != nil {
		if derr := p.dropSandbox(); derr != nil {
			err = fmt.Errorf("%w; and the loading role could not be dropped (%v): the next drconsole run drops it", err, derr)
		}
	}
	if err != nil && ctx.Err() != nil && !errors.Is(err, ErrCancelled) {
		err = fmt.Errorf("%w: restore of %q stopped; %s is untouched", ErrCancelled, storage.Printable(p.Source.Backup.Name), p.Target)
	}
	if err != nil || p.Mode == ModeTest {
		p.lock.release() // nothing is left to swap
	}
	r.finished = err != nil
	r.Duration = time.Since(start)
	rep.Report(Event{Time: time.Now(), Stage: StageDone, Final: true, Err: err, Read: r.Read, Size: p.Source.Backup.Size, Decompressed: r.Dump, TablesDone: r.Tables, TablesTotal: p.tablesTotal()})
	return r, err
}

func (p *Plan) tablesTotal() int {
	if p.Contents.Archive != nil {
		return len(p.Contents.Archive.Tables)
	}
	return 0
}

func (p *Plan) restore(ctx context.Context, rep Reporter, r *Restored) (created bool, err error) {
	// Opening the backup (a download, a key exchange, the first buffers decoded) overlaps
	// CREATE DATABASE: both are start-up time before any row moves.
	opened := make(chan openedStream, 1)
	go func() { opened <- p.openStream(ctx) }()
	rep.Report(Event{Time: time.Now(), Stage: StageCreate, Message: fmt.Sprintf("creating scratch database %s", p.Scratch)})
	if created, err := p.createScratch(ctx); err != nil {
		(<-opened).close()
		return created, err
	}
	rep.Report(Event{Time: time.Now(), Stage: StageCreate, Message: fmt.Sprintf("created scratch database %s", p.Scratch)})

	rep.Report(Event{Time: time.Now(), Stage: StageStream, Message: fmt.Sprintf("streaming %s into %s", storage.Printable(p.Source.Backup.Name), p.Scratch)})
	if err := p.load(ctx, rep, r, <-opened); err != nil {
		return true, err
	}
	rep.Report(Event{Time: time.Now(), Stage: StageStream, Message: fmt.Sprintf("loaded %d tables (%s of dump) into %s", r.Tables, formatBytes(r.Dump), p.Scratch)})

	faultpoint(ctx, "checks")
	rep.Report(Event{Time: time.Now(), Stage: StageChecks, Message: fmt.Sprintf("running checks in %s", p.Scratch)})
	compare := ""
	if p.Mode == ModeSwap {
		compare = p.Target
	}
	// The checks read the restored copy as the sandbox: a view or an operator the backup
	// defined runs with no privileges, whatever the check's query touches.
	r.Checks = checkRestored(ctx, p.loadConn(), p.opts.Conn, p.Scratch, compare, p.Contents.Archive, p.opts.Checks)
	if ctx.Err() != nil {
		return true, ctx.Err()
	}
	// The results are returned in r.Checks; callers show and journal them as a table. A
	// check the operator may overrule (tables live has and the copy lacks) blocks only
	// the swap, not the restore.
	if failed := Failed(r.Checks); len(failed) > 0 {
		return true, fmt.Errorf("%w in %s: %s: %s", ErrChecksFailed, p.Scratch, failed[0].Name, failed[0].Detail)
	}
	if p.sandbox != nil {
		faultpoint(ctx, "owners")
		rep.Report(Event{Time: time.Now(), Stage: StageChecks, Message: fmt.Sprintf("giving the restored objects to their owners; dropping the loading role %s", p.sandbox.role)})
		warnings, err := p.settleOwners(ctx, &p.own)
		r.Warnings = append(r.Warnings, warnings...)
		if err != nil {
			return true, err
		}
		if err := p.dropSandbox(); err != nil {
			return true, fmt.Errorf("%w: %v", ErrDatabase, err)
		}
	}
	switch p.Mode {
	case ModeSwap:
		rep.Report(Event{Time: time.Now(), Stage: StageChecks, Message: fmt.Sprintf("copying owner, grants and settings of %s to %s", p.Target, p.Scratch)})
		carried, err := p.carryProperties(ctx)
		if err != nil {
			return true, err
		}
		if len(carried) > 0 {
			// Set on live for a reason that may have been the incident itself (a
			// default_transaction_read_only to stop writes): the operator should know
			// the restored copy has them too.
			r.Warnings = append(r.Warnings, fmt.Sprintf("settings of %s carried to the restored copy: %s", p.Target, strings.Join(carried, ", ")))
		}
	case ModeTest:
		// Made on purpose: no longer a scratch copy anyone should drop as a leftover.
		if err := p.mark(ctx, p.Scratch, RoleTest); err != nil {
			return true, err
		}
	}
	return true, nil
}

// createScratch creates the scratch database and marks it as drconsole's at once, so
// that a restore killed from here on leaves something the next run recognises. created
// is false only when the server said the database was not created.
func (p *Plan) createScratch(ctx context.Context) (created bool, err error) {
	admin, err := connectAdmin(ctx, p.opts.Conn)
	if err != nil {
		return false, err
	}
	defer admin.Close(context.Background())
	stmt := "CREATE DATABASE " + pgx.Identifier{p.Scratch}.Sanitize() + " TEMPLATE template0"
	if p.sandbox != nil {
		// Owned by the sandbox from its first moment: a kill before the mark below still
		// leaves a database the next run knows for drconsole's (by its owner's mark).
		stmt += " OWNER " + pgx.Identifier{p.sandbox.role}.Sanitize()
	}
	if p.Mode == ModeSwap {
		var enc, collate, ctype string
		if err := admin.QueryRow(ctx, `SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = $1`, p.Target).Scan(&enc, &collate, &ctype); err != nil {
			return false, fmt.Errorf("%w: reading %s's encoding: %v", ErrDatabase, p.Target, err)
		}
		stmt += fmt.Sprintf(" ENCODING %s LC_COLLATE %s LC_CTYPE %s", quoteLiteral(enc), quoteLiteral(collate), quoteLiteral(ctype))
	} else if a := p.Contents.Archive; a != nil && a.Encoding != "" {
		stmt += " ENCODING " + quoteLiteral(a.Encoding)
	}
	if _, err := admin.Exec(ctx, stmt); err != nil {
		var pe *pgconn.PgError
		return !errors.As(err, &pe), fmt.Errorf("%w: creating scratch database %s: %v", ErrDatabase, p.Scratch, pgMessage(err))
	}
	faultpoint(ctx, "created")
	if _, err := admin.Exec(ctx, commentStatement(p.Scratch, p.marker(RoleScratch).comment())); err != nil {
		return true, fmt.Errorf("%w: marking scratch database %s: %v", ErrDatabase, p.Scratch, pgMessage(err))
	}
	// Nobody but the sandbox connects to a half-loaded copy; settleOwners gives PUBLIC its
	// default rights back.
	if p.sandbox != nil {
		if _, err := admin.Exec(ctx, "REVOKE CONNECT, TEMPORARY ON DATABASE "+pgx.Identifier{p.Scratch}.Sanitize()+" FROM PUBLIC"); err != nil {
			return true, fmt.Errorf("%w: closing scratch database %s to others: %v", ErrDatabase, p.Scratch, pgMessage(err))
		}
	}
	return true, nil
}

// marker is what this restore writes on a database it created.
func (p *Plan) marker(role string) Marker {
	return Marker{Role: role, Target: p.Target, Backup: p.Source.Backup.Name, Started: p.now, By: Holder()}
}

// mark sets a database's mark, on a fresh connection.
func (p *Plan) mark(ctx context.Context, database, role string) error {
	admin, err := connectAdmin(ctx, p.opts.Conn)
	if err != nil {
		return err
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, commentStatement(database, p.marker(role).comment())); err != nil {
		return fmt.Errorf("%w: marking %s: %v", ErrDatabase, database, pgMessage(err))
	}
	return nil
}

// carryProperties gives the scratch database what pg_restore does not restore: the
// live database's owner, connection limit, grants and ALTER DATABASE … SET settings. It
// returns the settings, "name=value" (with "(role r)" for a role's), for the operator.
func (p *Plan) carryProperties(ctx context.Context) (carried []string, err error) {
	admin, err := connectAdmin(ctx, p.opts.Conn)
	if err != nil {
		return nil, err
	}
	defer admin.Close(context.Background())
	scratch := pgx.Identifier{p.Scratch}.Sanitize()
	var owner string
	var connLimit int
	var acl []string
	var oid uint32
	if err := admin.QueryRow(ctx, `SELECT pg_get_userbyid(datdba), datconnlimit, coalesce(datacl::text[], '{}'), oid FROM pg_database WHERE datname = $1`, p.Target).Scan(&owner, &connLimit, &acl, &oid); err != nil {
		return nil, fmt.Errorf("%w: reading %s's properties: %v", ErrDatabase, p.Target, err)
	}
	stmts := []string{
		"ALTER DATABASE " + scratch + " OWNER TO " + pgx.Identifier{owner}.Sanitize(),
		fmt.Sprintf("ALTER DATABASE %s CONNECTION LIMIT %d", scratch, connLimit),
	}
	if len(acl) > 0 {
		stmts = append(stmts, "REVOKE ALL ON DATABASE "+scratch+" FROM PUBLIC")
		for _, item := range acl {
			g, err := grantFromACL(item, scratch)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrDatabase, err)
			}
			stmts = append(stmts, g...)
		}
	}
	rows, err := admin.Query(ctx, `SELECT coalesce(pg_get_userbyid(NULLIF(setrole, 0)), ''), setconfig FROM pg_db_role_setting WHERE setdatabase = $1`, oid)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s's settings: %v", ErrDatabase, p.Target, err)
	}
	type setting struct {
		role   string
		config []string
	}
	settings, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (setting, error) {
		var s setting
		return s, r.Scan(&s.role, &s.config)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s's settings: %v", ErrDatabase, p.Target, err)
	}
	for _, s := range settings {
		for _, kv := range s.config {
			k, v, _ := strings.Cut(kv, "=")
			set := fmt.Sprintf("SET %s TO %s", pgx.Identifier{k}.Sanitize(), quoteLiteral(v))
			if s.role == "" {
				stmts = append(stmts, "ALTER DATABASE "+scratch+" "+set)
				carried = append(carried, kv)
			} else {
				stmts = append(stmts, "ALTER ROLE "+pgx.Identifier{s.role}.Sanitize()+" IN DATABASE "+scratch+" "+set)
				carried = append(carried, kv+" (role "+s.role+")")
			}
		}
	}
	for _, s := range stmts {
		if _, err := admin.Exec(ctx, s); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrDatabase, s, pgMessage(err))
		}
	}
	return carried, nil
}

// grantFromACL turns one aclitem ("grantee=CTc/grantor", grantee empty for PUBLIC,
// '*' after a letter for WITH GRANT OPTION) into GRANT statements on database db.
func grantFromACL(item, db string) ([]string, error) {
	grantee, rest, ok := cutACLName(item)
	if !ok || !strings.HasPrefix(rest, "=") {
		return nil, fmt.Errorf("cannot read database privilege %q", item)
	}
	privs, _, _ := strings.Cut(rest[1:], "/")
	to := "PUBLIC"
	if grantee != "" {
		to = pgx.Identifier{grantee}.Sanitize()
	}
	names := map[byte]string{'C': "CREATE", 'T': "TEMPORARY", 'c': "CONNECT"}
	var plain, withGrant []string
	for i := 0; i < len(privs); i++ {
		name, ok := names[privs[i]]
		if !ok {
			continue
		}
		if i+1 < len(privs) && privs[i+1] == '*' {
			withGrant = append(withGrant, name)
			i++
		} else {
			plain = append(plain, name)
		}
	}
	var out []string
	if len(plain) > 0 {
		out = append(out, fmt.Sprintf("GRANT %s ON DATABASE %s TO %s", strings.Join(plain, ", "), db, to))
	}
	if len(withGrant) > 0 {
		out = append(out, fmt.Sprintf("GRANT %s ON DATABASE %s TO %s WITH GRANT OPTION", strings.Join(withGrant, ", "), db, to))
	}
	return out, nil
}

// cutACLName reads the grantee at the start of an aclitem, double-quoted or not.
func cutACLName(item string) (name, rest string, ok bool) {
	if !strings.HasPrefix(item, `"`) {
		i := strings.IndexByte(item, '=')
		if i < 0 {
			return "", "", false
		}
		return item[:i], item[i:], true
	}
	var b strings.Builder
	for i := 1; i < len(item); i++ {
		if item[i] == '"' {
			if i+1 < len(item) && item[i+1] == '"' {
				b.WriteByte('"')
				i++
				continue
			}
			return b.String(), item[i+1:], true
		}
		b.WriteByte(item[i])
	}
	return "", "", false
}

// openedStream is the backup opened and unwrapped down to the dump.
type openedStream struct {
	rc   io.ReadCloser
	read *Meter // bytes read from the location
	st   *Stream
	err  error
}

func (o openedStream) close() {
	if o.st != nil {
		o.st.Close()
	}
	if o.rc != nil {
		o.rc.Close()
	}
}

func (p *Plan) openStream(ctx context.Context) openedStream {
	rc, err := p.Source.open(ctx)
	if err != nil {
		return openedStream{err: err}
	}
	read := NewMeter(contextReader{ctx, rc})
	st, err := Unwrap(read, p.opts.Keys)
	if err != nil {
		rc.Close()
		return openedStream{err: inBackup(p.Source, err)}
	}
	return openedStream{rc: rc, read: read, st: st}
}

// load streams the opened backup into pg_restore or the parallel engine (custom; see
// loadCustom) or execPlain (plain SQL).
func (p *Plan) load(ctx context.Context, rep Reporter, r *Restored, o openedStream) error {
	if o.err != nil {
		return o.err
	}
	defer o.close()
	read, st := o.read, o.st
	dump := NewMeter(st.Reader)
	if st.Format == storage.FormatPlain {
		return p.loadPlain(ctx, rep, r, read, dump)
	}

	return p.loadCustom(ctx, rep, r, read, dump)
}

// serverGone: a libpq tool's message says the server, not the dump, ended its work.
func serverGone(msg string) bool {
	for _, s := range []string{"server closed the connection unexpectedly", "terminating connection due to administrator command",
		"the database system is shutting down", "the database system is in recovery mode", "connection to server", "could not receive data from server"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// sandboxHint explains a refusal the sandbox met: the backup did something only a more
// powerful role may do. Harmless backups need that rarely (C functions, event triggers);
// a hostile one needs it to escape. Either way the operator decides.
func (p *Plan) sandboxHint(msg string) string {
	if p.sandbox == nil {
		return ""
	}
	for _, s := range []string{"permission denied", "must be superuser", "must be owner", "must be member", "must have", "password is required", "only superuser"} {
		if strings.Contains(msg, s) {
			return fmt.Sprintf(" (the backup loads as a role without privileges, and this needs more: a backup you trust can be loaded as %q with --trust-backup)", p.opts.Conn.User)
		}
	}
	return ""
}

// loadPlain replays a plain SQL dump into the scratch database over one connection
// (execPlain), not through psql: no meta-command in the backup can run.
func (p *Plan) loadPlain(ctx context.Context, rep Reporter, r *Restored, read, dump *Meter) error {
	var mu sync.Mutex
	done, current := 0, ""
	tables := func() (int, int, string) {
		mu.Lock()
		defer mu.Unlock()
		return done, p.tablesTotal(), current
	}
	stop := sampleProgress(ctx, rep, StageStream, p.Source.Backup.Size, read, dump, tables)
	notices := &noticeLog{}
	var guard plainGuard
	if p.sandbox != nil {
		guard = p.plainGuard(&p.own)
	}
	pc, err := p.loadConn().connectPg(ctx, p.Scratch, notices)
	if err == nil {
		err = execPlain(ctx, pc, dump, func(n int, table string) {
			mu.Lock()
			done, current = n, table
			mu.Unlock()
		}, guard)
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		pc.Close(closeCtx)
		cancel()
		// A damaged backup decodes to garbage SQL: read the stream to its end so the
		// integrity checks of its layers can say so.
		if err != nil && ctx.Err() == nil && (errors.Is(err, ErrRestoreTool) || errors.Is(err, ErrPreflight) || errors.Is(err, ErrDatabase)) {
			if _, derr := io.Copy(io.Discard, dump); derr != nil {
				err = derr
			}
		}
	}
	stop()
	r.Read, r.Dump, r.Warnings = read.Count(), dump.Count(), notices.warnings()
	r.Tables, _, _ = tables()
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, ErrDatabase):
		return err
	case errors.Is(err, ErrRestoreTool):
		if hint := p.sandboxHint(err.Error()); hint != "" {
			err = fmt.Errorf("%w%s", err, hint)
		}
	}
	return inBackup(p.Source, err)
}

// feed copies the dump into the child's stdin in feedSize writes. When the child stops
// reading, the rest of the stream is still read to its end, so the integrity checks at
// the end of every layer run and a damaged backup is reported as such.
func feed(w io.Writer, r io.Reader) (streamErr, writeErr error) {
	buf := make([]byte, feedSize)
	for {
		n, err := r.Read(buf)
		if n > 0 && writeErr == nil {
			if _, werr := w.Write(buf[:n]); werr != nil {
				writeErr = werr
			}
		}
		if err == io.EOF {
			return nil, writeErr
		}
		if err != nil {
			return err, writeErr
		}
	}
}

// killGroup asks a child's process group to stop, and forces it after 5 s unless the
// child has been reaped by then (exited closed): its PID may belong to another process.
func killGroup(cmd *exec.Cmd, exited <-chan struct{}) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	go func(pid int) {
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}(cmd.Process.Pid)
}

// restoreChild follows pg_restore --verbose output: tables done, the current table,
// warnings and the last error.
type restoreChild struct {
	rep   Reporter
	total int
	// phase is the parallel engine's, when it runs pg_restore for one part; a whole
	// restore's is read from pg_restore's own lines (see phaseOf).
	phase string
	whole bool

	done    atomic.Int64
	mu      sync.Mutex
	current string
	errs    []string
	warns   []string
}

func (c *restoreChild) tables() (int, int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.done.Load()), c.total, c.current
}

func (c *restoreChild) readStderr(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		c.mu.Lock()
		if name, ok := strings.CutPrefix(line, `pg_restore: processing data for table "`); ok {
			c.current = strings.TrimSuffix(name, `"`)
			c.done.Add(1)
		}
		if c.whole {
			c.phase = phaseOf(c.phase, line)
		}
		lower := strings.ToLower(line)
		switch {
		case strings.Contains(lower, "error:"):
			c.errs = append(c.errs, strings.TrimSpace(line))
		case strings.Contains(lower, "warning:"):
			if len(c.warns) < 50 {
				c.warns = append(c.warns, strings.TrimSpace(line))
			}
		}
		done, total, current := int(c.done.Load()), c.total, c.current
		phase := c.phase
		c.mu.Unlock()
		c.rep.Report(Event{Time: time.Now(), Stage: StageStream, Phase: phase, Message: line, Tool: true, TablesDone: done, TablesTotal: total, Table: current})
	}
}

// phaseOf is the phase of a whole pg_restore run after line (--verbose), from the one
// before: it creates the schema, loads the data, then builds indexes, constraints and
// triggers; it never goes back.
func phaseOf(phase, line string) string {
	what, ok := strings.CutPrefix(line, "pg_restore: ")
	if !ok {
		return phase
	}
	switch {
	case phase == string(parallel.PhasePostData):
	case strings.HasPrefix(what, "processing data for table"), strings.HasPrefix(what, "executing SEQUENCE SET"),
		strings.HasPrefix(what, "processing item") && phase == string(parallel.PhaseLoad):
		return string(parallel.PhaseLoad)
	case strings.HasPrefix(what, "creating INDEX"), strings.HasPrefix(what, "creating CONSTRAINT"), strings.HasPrefix(what, "creating FK CONSTRAINT"),
		strings.HasPrefix(what, "creating TRIGGER"), strings.HasPrefix(what, "creating RULE"), strings.HasPrefix(what, "creating POLICY"),
		strings.HasPrefix(what, "creating INDEX ATTACH"), strings.HasPrefix(what, "creating MATERIALIZED VIEW DATA"):
		return string(parallel.PhasePostData)
	case strings.HasPrefix(what, "creating ") && phase == "":
		return string(parallel.PhasePreData)
	}
	return phase
}

func (c *restoreChild) lastError() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.errs) == 0 {
		return ""
	}
	first := c.errs[0]
	if len(c.errs) > 1 {
		first += fmt.Sprintf(" (and %d more lines)", len(c.errs)-1)
	}
	return first
}

func (c *restoreChild) warnings() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.warns...)
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// pgMessage is the server's message without pgx's decoration.
func pgMessage(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if pe.Detail != "" {
			// "being accessed by other users" says why only here: a prepared transaction,
			// N other sessions.
			return pe.Message + " (" + strings.ReplaceAll(pe.Detail, "\n", " ") + ")"
		}
		return pe.Message
	}
	return err.Error()
}

func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
