// Package parallel restores a pg_dump custom-format archive as it streams past, over
// several connections: pg_restore creates the schema, the engine loads each table's rows
// in row-aligned chunks over N connections and builds indexes and constraints in
// parallel, and pg_restore finishes what remains (sequences, triggers, ACLs, …).
package parallel

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"drconsole/recovery/pgarchive"
)

// DefaultChunkSize is how many bytes of COPY rows go in one COPY: big enough that a
// statement's cost is nothing beside its rows, small enough that N of them in memory are
// a few tens of MiB (measured in bench/parallel).
const DefaultChunkSize = 4 << 20

// Phase is the part of the restore under way.
type Phase string

const (
	PhasePreData  Phase = "pre-data"  // pg_restore creates the schema
	PhaseLoad     Phase = "load"      // rows stream into the tables (indexes of loaded tables build beside)
	PhasePostData Phase = "post-data" // indexes, constraints, then pg_restore's remaining entries
)

// Config is what the engine needs from its caller.
type Config struct {
	Jobs      int // connections loading rows and building indexes (N); 0: the number of CPUs, at least 2
	ChunkSize int // bytes of rows per COPY; 0: DefaultChunkSize
	// Connect opens a connection to the database being restored into, and only to it.
	Connect func(ctx context.Context) (*pgconn.PgConn, error)
	// PgRestore runs pg_restore on archive (the original's header and table of contents,
	// no data) restoring the entries of list, in that order, into the same database.
	PgRestore func(ctx context.Context, phase Phase, archive []byte, list []int) error
	// Progress receives progress; it must not block for long. nil: none.
	Progress func(Progress)
	// MaintenanceWorkMem is maintenance_work_mem for each process of an index build, in
	// bytes (a build with parallel workers gets it times 1 + its workers); 0:
	// DefaultMaintenanceWorkMem.
	MaintenanceWorkMem int64
	// MaintenanceWorkers is max_parallel_maintenance_workers for every index build; -1:
	// decided for each build, from the CPUs that no other work claims (see CPUs and take).
	MaintenanceWorkers int
	// CPUs is the server's CPUs, for MaintenanceWorkers -1; 0: this machine's.
	CPUs int
}

// DefaultMaintenanceWorkMem is the engine's maintenance_work_mem for each process of an
// index build: the least for which the server gives a build parallel workers (32 MB a
// process, plan_create_index_workers). More costs CPU here: on PostgreSQL 15 the
// benchmark's two indexes on 5 M rows, built side by side without workers, took 5.6-5.9
// CPU-s of the server with 16 or 32 MB, 6.9 with 64 MB (the server's default), 7.6-9.8
// with 256 MB to 1 GB (one quicksort, its memory far beyond the CPU caches).
const DefaultMaintenanceWorkMem = 32 << 20

// Progress is one report of the engine's progress.
type Progress struct {
	Phase   Phase
	Message string // a line for the log, or ""
	Table   string // schema.table whose rows were just loaded
	Rows    int64  // rows of Table loaded so far
	// Tables with data: loaded and in the archive.
	TablesDone, TablesTotal int
	// Post-data entries (indexes, constraints, foreign keys, index attachments) the engine
	// builds: built and in the archive.
	IndexesDone, IndexesTotal int
}

// Result is what a restore loaded.
type Result struct {
	Rows       map[int]int64 // rows loaded (as the server counted them), by TABLE DATA dump ID
	Tables     int           // TABLE DATA entries loaded
	Blobs      int           // large objects written
	Built      int           // post-data entries the engine built
	PreData    time.Duration // pg_restore creating the schema (and the connections opening)
	Load       time.Duration // from the first row read to the last row loaded
	PostData   time.Duration // from then to the end
	Jobs       int
	ChunkSize  int
	Connection int // connections opened, pg_restore's not counted
}

// Check says why the engine cannot restore the archive exactly as pg_restore would; nil
// when it can. a must have been read with its raw TOC kept (pgarchive.ReadTOC keepRaw).
func Check(a *pgarchive.Archive) error {
	_, err := newPlan(a)
	return err
}

// Restore restores the archive whose table of contents is a, its data blocks following
// on r, read to the archive's end. On any error or cancel every connection and child it
// started is stopped before it returns; what it created in the database is left to the
// caller (who drops the database).
func Restore(ctx context.Context, a *pgarchive.Archive, r *bufio.Reader, cfg Config) (*Result, error) {
	p, err := newPlan(a)
	if err != nil {
		return nil, err
	}
	if cfg.Jobs <= 0 {
		cfg.Jobs = max(2, runtime.NumCPU())
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.MaintenanceWorkMem <= 0 {
		cfg.MaintenanceWorkMem = DefaultMaintenanceWorkMem
	}
	if cfg.CPUs <= 0 {
		cfg.CPUs = runtime.NumCPU()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	e := &engine{p: p, cfg: cfg, ctx: ctx, cancel: cancel, wake: make(chan struct{}, cfg.Jobs),
		chunks: make(chan *chunk), pool: make(chan []byte, cfg.Jobs+1),
		res: &Result{Rows: map[int]int64{}, Jobs: cfg.Jobs, ChunkSize: cfg.ChunkSize}}
	for i := 0; i < cfg.Jobs+1; i++ {
		e.pool <- nil // allocated on first use
	}
	defer e.closeConns()
	err = e.run(r)
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause // the first failure, not what it made the others see
	}
	return e.res, err
}

type engine struct {
	p      *plan
	cfg    Config
	ctx    context.Context
	cancel context.CancelCauseFunc
	res    *Result

	conns    []*pgconn.PgConn
	blobConn *pgconn.PgConn
	connMu   sync.Mutex

	chunks chan *chunk
	pool   chan []byte
	carry  []byte

	mu        sync.Mutex
	wake      chan struct{}
	ready     []*item
	locks     map[int]*tableLock
	left      int // items not done
	built     int // entries built
	tablesTot int
	tablesOK  int
	readDone  bool
	loadEnd   time.Time
	loadStart time.Time
	notes     []Progress
	rowsOf    map[int]*tableLoad // TABLE entry → its data
	claimed   int                // the server's CPUs the work under way keeps busy: a COPY one, a build 1 + its workers
	running   int                // connections loading rows or building
}

type tableLock struct {
	shared    int
	exclusive bool
}

type chunk struct {
	t    *tableLoad
	buf  []byte
	data []byte
	rows int64
}

// fail records the first failure and stops everything else.
func (e *engine) fail(err error) error {
	e.cancel(err)
	return err
}

func (e *engine) progress(pr Progress) {
	if e.cfg.Progress == nil {
		return
	}
	e.mu.Lock()
	pr.TablesDone, pr.TablesTotal = e.tablesOK, e.tablesTot
	pr.IndexesDone, pr.IndexesTotal = e.built, len(e.p.byEntry)
	e.mu.Unlock()
	e.cfg.Progress(pr)
}

func (e *engine) run(r *bufio.Reader) error {
	p := e.p
	start := time.Now()
	e.tablesTot = len(p.data)
	e.progress(Progress{Phase: PhasePreData, Message: fmt.Sprintf("parallel engine: %d connections, %s chunks; pg_restore creates the schema (%d entries)", e.cfg.Jobs, sizeString(e.cfg.ChunkSize), len(p.preData))})

	// The connections open while pg_restore creates the schema.
	opened := make(chan error, 1)
	go func() { opened <- e.openConns() }()
	err := e.cfg.PgRestore(e.ctx, PhasePreData, p.a.Raw, p.preData)
	if err != nil {
		e.cancel(err)
	}
	if oerr := <-opened; err == nil && oerr != nil {
		err = oerr
	}
	if err != nil {
		return e.fail(err)
	}
	if err := e.prepareItems(); err != nil {
		return e.fail(err)
	}
	e.res.PreData = time.Since(start)

	e.loadStart = time.Now()
	e.progress(Progress{Phase: PhaseLoad, Message: fmt.Sprintf("loading %d tables over %d connections; building %d indexes and constraints as their tables are loaded", len(p.data), e.cfg.Jobs, len(p.byEntry))})
	var workers sync.WaitGroup
	for _, c := range e.conns {
		workers.Go(func() {
			if err := e.work(c); err != nil {
				e.fail(err)
			}
		})
	}
	rerr := e.read(r)
	if rerr != nil {
		e.fail(rerr)
	}
	close(e.chunks)
	workers.Wait()
	if rerr != nil {
		return rerr
	}
	if err := context.Cause(e.ctx); err != nil {
		return err
	}
	if e.loadEnd.IsZero() {
		e.loadEnd = time.Now()
	}
	e.res.Load = e.loadEnd.Sub(e.loadStart)
	e.res.Built = e.built
	e.closeConns()

	e.progress(Progress{Phase: PhasePostData, Message: fmt.Sprintf("pg_restore restores the remaining %d entries (sequence values, triggers, comments, privileges, …)", len(p.postData))})
	if err := e.cfg.PgRestore(e.ctx, PhasePostData, p.a.Raw, p.postData); err != nil {
		return e.fail(err)
	}
	e.res.PostData = time.Since(e.loadEnd)
	return nil
}

// openConns opens and sets up the N connections.
func (e *engine) openConns() error {
	conns := make([]*pgconn.PgConn, e.cfg.Jobs)
	errs := make([]error, e.cfg.Jobs)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			c, err := e.cfg.Connect(e.ctx)
			if err == nil {
				e.connMu.Lock()
				e.conns = append(e.conns, c)
				e.res.Connection++
				e.connMu.Unlock()
				err = e.setup(c)
			}
			conns[i], errs[i] = c, err
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// setup gives a connection the session pg_restore gives its own (_doSetFixedOutputState)
// and the settings for building indexes.
func (e *engine) setup(c *pgconn.PgConn) error {
	std := "off"
	if e.p.std {
		std = "on"
	}
	sql := "SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0;" +
		" SET client_encoding = '" + e.p.encoding + "'; SET standard_conforming_strings = " + std + ";" +
		" SELECT pg_catalog.set_config('search_path', '', false); SET check_function_bodies = false;" +
		" SET xmloption = content; SET client_min_messages = warning; SET row_security = off;" +
		fmt.Sprintf(" SET maintenance_work_mem = '%dkB';", e.cfg.MaintenanceWorkMem>>10)
	if e.cfg.MaintenanceWorkers >= 0 {
		sql += fmt.Sprintf(" SET max_parallel_maintenance_workers = %d;", e.cfg.MaintenanceWorkers)
	}
	if !e.p.std {
		sql += " SET escape_string_warning = off;"
	}
	if _, err := c.Exec(e.ctx, sql).ReadAll(); err != nil {
		return fmt.Errorf("setting up a connection: %w", err)
	}
	return nil
}

func (e *engine) closeConns() {
	e.connMu.Lock()
	conns := append(e.conns, e.blobConn)
	e.conns, e.blobConn = nil, nil
	e.connMu.Unlock()
	for _, c := range conns {
		if c != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c.Close(ctx)
			cancel()
		}
	}
}

// prepareItems splits the PRIMARY KEY and UNIQUE constraints of plain tables into an
// index and its attachment, and wires the items for the scheduler.
func (e *engine) prepareItems() error {
	kinds := map[string]byte{}
	res := e.conns[0].Exec(e.ctx, `SELECT n.nspname, c.relname, c.relkind FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')`)
	rows, err := res.ReadAll()
	if err != nil {
		return fmt.Errorf("reading the tables pg_restore created: %w", err)
	}
	for _, r := range rows {
		for _, row := range r.Rows {
			kinds[string(row[0])+"\x00"+string(row[1])] = row[2][0]
		}
	}
	var items []*item
	for _, it := range e.p.items {
		if u := it.unique; u != nil && kinds[u.schema+"\x00"+u.table] == 'r' {
			items = append(items, e.p.split(it))
		}
		items = append(items, it)
	}
	e.locks = map[int]*tableLock{}
	e.rowsOf = map[int]*tableLoad{}
	for _, t := range e.p.data {
		if t.table != 0 {
			e.rowsOf[t.table] = t
		}
	}
	for _, it := range items {
		for _, w := range it.waitItems {
			w.dependents = append(w.dependents, it)
			it.pending++
		}
		seen := map[int]bool{}
		for _, d := range it.waitData {
			if t := e.p.data[d]; t != nil && !seen[d] {
				seen[d] = true
				t.waiters = append(t.waiters, it)
				it.pending++
			}
		}
		for _, t := range it.tables {
			if e.locks[t] == nil {
				e.locks[t] = &tableLock{}
			}
		}
		if it.pending == 0 {
			e.makeReady(it)
		}
	}
	e.left = len(items)
	return nil
}

// read reads every data block to the archive's end: table rows go out in chunks to the
// connections, large objects are written here.
func (e *engine) read(r *bufio.Reader) error {
	blocks := e.p.a.Blocks(r)
	defer blocks.Close()
	for {
		b, err := blocks.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if b.Blobs {
			if err := e.loadBlobs(blocks); err != nil {
				return err
			}
			continue
		}
		t := e.p.data[b.Entry.ID]
		if t == nil {
			return &pgarchive.Error{Kind: pgarchive.ErrCorrupt, Msg: fmt.Sprintf("data block of %s %s", b.Entry.Desc, name(b.Entry))}
		}
		if t.hasBlock {
			return &pgarchive.Error{Kind: pgarchive.ErrCorrupt, Msg: fmt.Sprintf("two data blocks for %s", name(t.entry))}
		}
		t.hasBlock = true
		if err := e.readTable(blocks, t); err != nil {
			return err
		}
	}
	var missing []string
	for _, id := range sortedKeys(e.p.data) {
		if t := e.p.data[id]; !t.hasBlock {
			missing = append(missing, name(t.entry))
		}
	}
	if len(missing) > 0 {
		return &pgarchive.Error{Kind: pgarchive.ErrTruncated, Msg: fmt.Sprintf("archive ends before the data of %d tables (%s)", len(missing), missing[0])}
	}
	e.mu.Lock()
	e.readDone = true
	e.checkLoadEnd()
	e.wakeAll()
	e.mu.Unlock()
	e.emit()
	return nil
}

// readTable cuts one table's rows into chunks of whole rows and hands them out. The line
// "\." ends the rows (pg_dump writes it after them, as psql would need); what follows it
// is read and checked, not sent.
func (e *engine) readTable(blocks *pgarchive.Blocks, t *tableLoad) error {
	carry := e.carry[:0]
	for {
		buf, err := e.getBuf()
		if err != nil {
			return err
		}
		if len(carry) >= e.cfg.ChunkSize {
			buf = make([]byte, 0, len(carry)+e.cfg.ChunkSize) // a row longer than a chunk
		}
		buf = append(buf[:0], carry...)
		eof := false
		for len(buf) < cap(buf) {
			n, err := blocks.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err == io.EOF {
				eof = true
				break
			}
			if err != nil {
				e.pool <- buf
				return err
			}
		}
		cut := len(buf)
		if !eof {
			cut = bytes.LastIndexByte(buf, '\n') + 1
		}
		carry = append(carry[:0], buf[cut:]...)
		data := buf[:cut]
		stop := false
		if end := terminatorAt(data); end >= 0 {
			data, stop = data[:end], true
		}
		rows := int64(bytes.Count(data, []byte{'\n'}))
		if len(data) > 0 && data[len(data)-1] != '\n' {
			rows++
		}
		if len(data) == 0 {
			e.pool <- buf
		} else {
			e.mu.Lock()
			t.pending++
			t.sent += rows
			t.bytes += int64(len(data))
			e.mu.Unlock()
			select {
			case e.chunks <- &chunk{t: t, buf: buf, data: data, rows: rows}:
			case <-e.ctx.Done():
				e.pool <- buf
				return context.Cause(e.ctx)
			}
		}
		if stop || eof {
			break
		}
	}
	e.carry = carry[:0]
	close(t.end) // every chunk of it has been received: the COPYs of it may end
	e.mu.Lock()
	t.read = true
	e.tableProgress(t)
	e.mu.Unlock()
	e.emit()
	return nil
}

// terminatorAt finds the line "\." among the last lines of data; -1 when there is none.
func terminatorAt(d []byte) int {
	end := len(d)
	for i := 0; i < 4 && end > 0; i++ {
		e := end
		if d[e-1] == '\n' {
			e--
		}
		start := bytes.LastIndexByte(d[:e], '\n') + 1
		if e-start == 2 && d[start] == '\\' && d[start+1] == '.' {
			return start
		}
		end = start
	}
	return -1
}

func (e *engine) getBuf() ([]byte, error) {
	select {
	case b := <-e.pool:
		if b == nil || cap(b) > 2*e.cfg.ChunkSize {
			b = make([]byte, 0, e.cfg.ChunkSize)
		}
		return b, nil
	case <-e.ctx.Done():
		return nil, context.Cause(e.ctx)
	}
}

// tableProgress marks a table done once it is read and every chunk of it loaded, which
// may make items ready. Called with e.mu held.
func (e *engine) tableProgress(t *tableLoad) {
	if t.done || !t.read || t.pending > 0 {
		return
	}
	t.done = true
	e.tablesOK++
	e.res.Tables++
	e.res.Rows[t.entry.ID] = t.rows
	for _, it := range t.waiters {
		e.release(it)
	}
	e.note(Progress{Phase: PhaseLoad, Message: fmt.Sprintf("loaded %s: %d rows", t.copy.QualifiedName(), t.rows), Table: t.copy.QualifiedName(), Rows: t.rows})
	e.checkLoadEnd()
	e.wakeAll()
}

// note queues a report, made with e.mu held, for emit to send once it is released.
func (e *engine) note(pr Progress) {
	pr.TablesDone, pr.TablesTotal = e.tablesOK, e.tablesTot
	pr.IndexesDone, pr.IndexesTotal = e.built, len(e.p.byEntry)
	e.notes = append(e.notes, pr)
}

// emit sends the queued reports.
func (e *engine) emit() {
	e.mu.Lock()
	notes := e.notes
	e.notes = nil
	e.mu.Unlock()
	if e.cfg.Progress != nil {
		for _, pr := range notes {
			e.cfg.Progress(pr)
		}
	}
}

func (e *engine) checkLoadEnd() {
	if e.readDone && e.tablesOK == e.tablesTot && e.loadEnd.IsZero() {
		e.loadEnd = time.Now()
		var rows int64
		for _, t := range e.p.data {
			rows += t.rows
		}
		e.note(Progress{Phase: PhasePostData, Message: fmt.Sprintf("loaded every table: %d rows in %d tables in %s; %d of %d indexes and constraints built, building the rest",
			rows, e.tablesOK, e.loadEnd.Sub(e.loadStart).Round(time.Millisecond), e.built, len(e.p.byEntry))})
	}
}

// release counts one of an item's dependencies done. Called with e.mu held.
func (e *engine) release(it *item) {
	it.pending--
	if it.pending == 0 {
		e.makeReady(it)
	}
}

// makeReady queues an item, the ones on the biggest tables first: they are the longest to
// build. Called with e.mu held.
func (e *engine) makeReady(it *item) {
	it.weight, it.size = 0, 0
	for _, t := range it.tables {
		if d := e.rowsOf[t]; d != nil {
			it.weight += d.rows
			it.size += d.bytes
		}
	}
	i := sort.Search(len(e.ready), func(i int) bool { return e.ready[i].weight < it.weight })
	e.ready = append(e.ready, nil)
	copy(e.ready[i+1:], e.ready[i:])
	e.ready[i] = it
}

func (e *engine) wakeAll() {
	for i := 0; i < cap(e.wake); i++ {
		select {
		case e.wake <- struct{}{}:
		default:
			return
		}
	}
}

// work is one connection's loop: rows first, so the stream never waits for an index;
// otherwise the next post-data item the locks allow.
func (e *engine) work(c *pgconn.PgConn) error {
	chunks := e.chunks
	var next *chunk // a chunk of another table that ended the last COPY
	for {
		if next == nil && chunks != nil {
			select {
			case ch, ok := <-chunks:
				if !ok {
					chunks = nil
					continue
				}
				next = ch
			default:
			}
		}
		if next != nil {
			var err error
			if next, err = e.load(c, next); err != nil {
				return err
			}
			continue
		}
		it, finished := e.take()
		if it != nil {
			if err := e.build(c, it); err != nil {
				return err
			}
			continue
		}
		if finished && chunks == nil {
			return nil
		}
		select {
		case ch, ok := <-chunks:
			if !ok {
				chunks = nil
				continue
			}
			next = ch
		case <-e.wake:
		case <-e.ctx.Done():
			return context.Cause(e.ctx)
		}
	}
}

// load copies rows of one table in one COPY: first's, then every chunk of the same
// table this connection receives until the table's rows end. A COPY for each chunk
// costs the server a statement's start and end each time, and loaded 5 M rows markedly
// slower than one COPY per connection. The server's count of the rows must be the count
// sent. It returns the chunk of another table that ended the COPY, if one did.
func (e *engine) load(c *pgconn.PgConn, first *chunk) (*chunk, error) {
	t := first.t
	s := &tableStream{e: e, t: t, cur: first}
	e.mu.Lock()
	e.claimed++
	e.running++
	e.mu.Unlock()
	tag, err := c.CopyFrom(e.ctx, s, t.sql)
	e.mu.Lock()
	e.claimed--
	e.running--
	e.wakeAll() // a build waiting for a CPU may start
	e.mu.Unlock()
	if err != nil {
		// The whole restore fails: s may still be read by pgconn's goroutine, its buffers
		// are left.
		if e.ctx.Err() != nil {
			return nil, context.Cause(e.ctx)
		}
		return nil, fmt.Errorf("loading %s: %w", t.copy.QualifiedName(), err)
	}
	if n := tag.RowsAffected(); n != s.rows {
		return nil, fmt.Errorf("loading %s: the server loaded %d rows of the %d sent", t.copy.QualifiedName(), n, s.rows)
	}
	e.mu.Lock()
	t.pending -= s.chunks
	t.rows += s.rows
	e.tableProgress(t)
	e.mu.Unlock()
	e.emit()
	return s.next, nil
}

// tableStream is the rows of one COPY: chunk after chunk of one table.
type tableStream struct {
	e      *engine
	t      *tableLoad
	cur    *chunk
	off    int
	chunks int   // chunks sent whole
	rows   int64 // their rows
	next   *chunk
}

func (s *tableStream) Read(p []byte) (int, error) {
	for s.cur == nil || s.off == len(s.cur.data) {
		if s.cur != nil {
			// Sent: its buffer goes back for the stream to fill.
			s.chunks++
			s.rows += s.cur.rows
			s.e.pool <- s.cur.buf
			s.cur, s.off = nil, 0
			s.e.mu.Lock()
			s.e.note(Progress{Phase: PhaseLoad, Table: s.t.copy.QualifiedName(), Rows: s.t.rows + s.rows})
			s.e.mu.Unlock()
			s.e.emit()
		}
		select {
		case ch, ok := <-s.e.chunks:
			if !ok {
				return 0, io.EOF
			}
			if ch.t != s.t {
				s.next = ch
				return 0, io.EOF
			}
			s.cur = ch
		case <-s.t.end:
			return 0, io.EOF
		case <-s.e.ctx.Done():
			return 0, context.Cause(s.e.ctx)
		}
	}
	n := copy(p, s.cur.data[s.off:])
	s.off += n
	return n, nil
}

// heavyBytes: an index build on tables with this much COPY data or more is heavy. It waits
// for a free CPU rather than share one, and takes the parallel workers there are CPUs
// for; lighter work starts at once, with no workers. On 2 CPUs, the benchmark's two
// indexes on 5 M rows built in 3.9 s one after the other with a worker each, in 3.9 s
// side by side without (and with 1.2 fewer CPU-s), and in 5.0–5.5 s side by side with a
// worker for the first (three processes on two CPUs, the longest build left alone on one
// at the end).
const heavyBytes = 32 << 20

// take returns the next item whose dependencies are done and whose locks are free, the
// biggest tables' first; finished is true when no item is left at all.
func (e *engine) take() (it *item, finished bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.left == 0 {
		return nil, true
	}
	waiting := map[int]bool{} // tables an exclusive item waits for: no new shared work on them
	heavyReady := 0
	for _, cand := range e.ready {
		if cand.builds && cand.size >= heavyBytes {
			heavyReady++
		}
	}
	for i, cand := range e.ready {
		free := true
		for _, t := range cand.tables {
			l := e.locks[t]
			if l.exclusive || cand.exclusive && l.shared > 0 || !cand.exclusive && waiting[t] {
				free = false
			}
		}
		heavy := cand.builds && cand.size >= heavyBytes
		if free && heavy && e.claimed > 0 && e.claimed >= e.cfg.CPUs {
			continue // no CPU for it: the work under way would share its own with it
		}
		if !free {
			if cand.exclusive {
				for _, t := range cand.tables {
					waiting[t] = true
				}
			}
			continue
		}
		for _, t := range cand.tables {
			if cand.exclusive {
				e.locks[t].exclusive = true
			} else {
				e.locks[t].shared++
			}
		}
		e.ready = append(e.ready[:i], e.ready[i+1:]...)
		cand.workers = 0
		if heavy {
			// The CPUs no other work claims, shared among the heavy builds ready to start
			// that have a connection: builds side by side use the CPUs better than one
			// build's workers (a parallel sort ends in one process).
			share := (e.cfg.CPUs - e.claimed) / max(1, min(heavyReady, e.cfg.Jobs-e.running))
			cand.workers = max(0, share-1)
			if e.cfg.MaintenanceWorkers >= 0 {
				cand.workers = e.cfg.MaintenanceWorkers
			}
		}
		cand.claim = 1 + cand.workers
		e.claimed += cand.claim
		e.running++
		return cand, false
	}
	return nil, false
}

// build runs one item in a transaction, each statement on its own (the extended protocol
// refuses a string of two). A deadlock with another item is retried.
func (e *engine) build(c *pgconn.PgConn, it *item) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if err = e.exec(c, it); err == nil || !isDeadlock(err) || e.ctx.Err() != nil {
			break
		}
	}
	e.mu.Lock()
	e.claimed -= it.claim
	e.running--
	for _, t := range it.tables {
		if it.exclusive {
			e.locks[t].exclusive = false
		} else {
			e.locks[t].shared--
		}
	}
	if err != nil {
		e.mu.Unlock()
		if e.ctx.Err() != nil {
			return context.Cause(e.ctx)
		}
		return fmt.Errorf("building %s: %w", it.what, err)
	}
	it.done = true
	e.left--
	for _, d := range it.dependents {
		e.release(d)
	}
	if it.last {
		e.built++
	}
	e.wakeAll()
	pr := Progress{Phase: PhaseLoad}
	if !e.loadEnd.IsZero() {
		pr.Phase = PhasePostData
	}
	if it.last {
		pr.Message = fmt.Sprintf("built %s (%d of %d)", it.what, e.built, len(e.p.byEntry))
	}
	e.note(pr)
	e.mu.Unlock()
	e.emit()
	return nil
}

func (e *engine) exec(c *pgconn.PgConn, it *item) error {
	if _, err := c.Exec(e.ctx, "BEGIN").ReadAll(); err != nil {
		return err
	}
	stmts := it.stmts
	if e.cfg.MaintenanceWorkers < 0 {
		// As many parallel workers as there are CPUs no other work claims (take): none
		// while the connections all load, one or more for a big index built alone.
		stmts = append([]string{fmt.Sprintf("SET LOCAL max_parallel_maintenance_workers = %d", it.workers)}, stmts...)
	}
	if it.workers > 0 {
		// The same memory for each of the build's processes.
		stmts = append([]string{fmt.Sprintf("SET LOCAL maintenance_work_mem = '%dkB'", e.cfg.MaintenanceWorkMem*int64(1+it.workers)>>10)}, stmts...)
	}
	if it.tablespace {
		ts := "''"
		if it.entry.Tablespace != "" {
			ts = pgarchive.QuoteIdent(it.entry.Tablespace)
		}
		stmts = append([]string{"SET LOCAL default_tablespace = " + ts}, stmts...)
	}
	for _, s := range stmts {
		if _, err := c.ExecParams(e.ctx, s, nil, nil, nil, nil).Close(); err != nil {
			if !c.IsClosed() {
				c.Exec(context.Background(), "ROLLBACK").ReadAll()
			}
			return err
		}
	}
	_, err := c.Exec(e.ctx, "COMMIT").ReadAll()
	return err
}

func isDeadlock(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "40P01"
}

// loadBlobs writes the large objects of one BLOBS block, in one transaction, as
// pg_restore does; pg_restore created them (lo_create) with the schema.
func (e *engine) loadBlobs(blocks *pgarchive.Blocks) error {
	if e.blobConn == nil {
		c, err := e.cfg.Connect(e.ctx)
		if err != nil {
			return err
		}
		e.connMu.Lock()
		e.blobConn = c
		e.res.Connection++
		e.connMu.Unlock()
		if err := e.setup(c); err != nil {
			return err
		}
	}
	c := e.blobConn
	if _, err := c.Exec(e.ctx, "BEGIN").ReadAll(); err != nil {
		return fmt.Errorf("writing large objects: %w", err)
	}
	buf := make([]byte, 256<<10)
	for {
		oid, err := blocks.NextBlob()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		fd, err := oneValue(c.ExecParams(e.ctx, "SELECT pg_catalog.lo_open($1, 131072)", [][]byte{[]byte(strconv.FormatUint(uint64(oid), 10))}, []uint32{26}, nil, nil))
		if err != nil {
			return fmt.Errorf("opening large object %d: %w", oid, err)
		}
		for {
			n, rerr := blocks.Read(buf)
			if n > 0 {
				if _, err := c.ExecParams(e.ctx, "SELECT pg_catalog.lowrite($1, $2)", [][]byte{fd, buf[:n]}, []uint32{23, 17}, []int16{0, 1}, nil).Close(); err != nil {
					return fmt.Errorf("writing large object %d: %w", oid, err)
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return rerr
			}
		}
		if _, err := c.ExecParams(e.ctx, "SELECT pg_catalog.lo_close($1)", [][]byte{fd}, []uint32{23}, nil, nil).Close(); err != nil {
			return fmt.Errorf("closing large object %d: %w", oid, err)
		}
		e.res.Blobs++
	}
	if _, err := c.Exec(e.ctx, "COMMIT").ReadAll(); err != nil {
		return fmt.Errorf("writing large objects: %w", err)
	}
	return nil
}

func oneValue(rr *pgconn.ResultReader) ([]byte, error) {
	var v []byte
	for rr.NextRow() {
		v = append([]byte(nil), rr.Values()[0]...)
	}
	if _, err := rr.Close(); err != nil {
		return nil, err
	}
	if v == nil {
		return nil, errors.New("no result")
	}
	return v, nil
}

func sortedKeys[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

func sizeString(n int) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
