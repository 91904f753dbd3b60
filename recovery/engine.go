package recovery

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"drconsole/recovery/parallel"
	"drconsole/recovery/pgarchive"
)

// Engines that load a custom-format archive (Options.Engine).
const (
	// EngineAuto picks the parallel engine for a backup of autoParallelSize or more on a
	// machine with autoParallelCPUs or more, pg_restore otherwise.
	EngineAuto = "auto"
	// EnginePgRestore streams the archive into pg_restore: the reference engine.
	EnginePgRestore = "pg_restore"
	// EngineParallel reads the archive's data blocks itself and loads them over several
	// connections (recovery/parallel); pg_restore still creates the schema. An archive it
	// cannot restore exactly as pg_restore would goes to pg_restore, saying why.
	EngineParallel = "parallel"
)

// autoParallelSize: below it a restore takes seconds and pg_restore's one connection
// is as good.
const autoParallelSize = 64 << 20

// autoParallelCPUs: on 2 CPUs the restore is CPU-bound (bench/parallel, CPU seconds of
// the 5 M-row dump): loading costs the server ~5 CPU-s and drconsole's decoding ~2.4, so
// two streams cannot load in less than ~3.8 s against pg_restore's ~4.4 (whose one
// backend leaves the second CPU to its decompression), the index builds cost the same
// for both engines, and the checks add their count(*). Measured: 0.9–1.1× overall. A
// second stream needs a CPU of its own beside the server's and the decoding's.
const autoParallelCPUs = 4

// validEngine refuses an engine name that is not one of the three.
func validEngine(e string) error {
	switch e {
	case "", EngineAuto, EnginePgRestore, EngineParallel:
		return nil
	}
	return fmt.Errorf("%w: unknown restore engine %q (auto, pg_restore or parallel)", ErrPreflight, e)
}

// autoEngine is what EngineAuto picks when set: tests run every restore with one engine.
var autoEngine = ""

// engine is the engine this restore starts with.
func (p *Plan) engine() string {
	switch {
	case p.opts.Engine == EnginePgRestore || p.opts.Engine == EngineParallel:
		return p.opts.Engine
	case autoEngine != "":
		return autoEngine
	case runtime.NumCPU() >= autoParallelCPUs && p.Source.Backup.Size >= autoParallelSize:
		return EngineParallel
	}
	return EnginePgRestore
}

// maxJobs bounds Options.Jobs: each connection is a server backend and a chunk in memory.
const maxJobs = 64

// engineLine says in pre-flight which engine loads the archive, and why.
func (p *Plan) engineLine() string {
	e := p.engine()
	why := "--engine"
	switch {
	case p.opts.Engine == EnginePgRestore || p.opts.Engine == EngineParallel:
	case autoEngine != "":
		why = "auto, set by the tests"
	default:
		why = fmt.Sprintf("auto: a %s backup on %d CPUs; parallel from %s on %d CPUs", formatBytes(p.Source.Backup.Size), runtime.NumCPU(), formatBytes(autoParallelSize), autoParallelCPUs)
	}
	if e == EngineParallel {
		return fmt.Sprintf("restore engine: parallel over %d connections (%s); an archive it cannot load exactly goes to pg_restore", p.jobs(), why)
	}
	return fmt.Sprintf("restore engine: pg_restore (%s)", why)
}

// jobs is the number of connections the parallel engine loads over.
func (p *Plan) jobs() int {
	if p.opts.Jobs > 0 {
		return p.opts.Jobs
	}
	return min(8, max(2, runtime.NumCPU()))
}

// loadCustom loads a custom-format archive with the engine chosen, counting each table's
// rows as the stream passes. The table of contents is read first, whatever the engine:
// the sandbox prepares what it may not do itself from it (sandboxTOC).
func (p *Plan) loadCustom(ctx context.Context, rep Reporter, r *Restored, read, dump *Meter) error {
	if err := validEngine(p.opts.Engine); err != nil {
		return err
	}
	r.Engine = p.engine()
	br := bufio.NewReaderSize(dump, stageBuffer)
	toc, err := pgarchive.ReadTOC(br, true)
	if err != nil {
		r.Read, r.Dump = read.Count(), dump.Count()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Read on: a damaged stream's own check says best what is wrong.
		if _, derr := io.Copy(io.Discard, br); derr != nil {
			err = derr
		}
		return inBackup(p.Source, archiveErr(err))
	}
	skip, err := p.sandboxTOC(ctx, toc)
	if err != nil {
		return err
	}
	whole := func() io.Reader { return io.MultiReader(bytes.NewReader(toc.Raw), br) }
	if r.Engine == EnginePgRestore {
		return p.loadPgRestore(ctx, rep, r, read, dump, whole(), entriesBut(toc, skip))
	}
	if err := parallel.Check(toc); err != nil {
		r.Engine, r.Fallback = EnginePgRestore, err.Error()
		rep.Report(Event{Time: time.Now(), Stage: StageStream, Message: fmt.Sprintf("parallel engine: %s; restoring with pg_restore instead", r.Fallback)})
		return p.loadPgRestore(ctx, rep, r, read, dump, whole(), entriesBut(toc, skip))
	}
	return p.loadParallel(ctx, rep, r, read, dump, toc, br, skip)
}

// entriesBut lists the archive's entries in order without those in skip; nil (all of
// them) when skip is empty.
func entriesBut(toc *pgarchive.Archive, skip map[int]bool) []int {
	if len(skip) == 0 {
		return nil
	}
	list := make([]int, 0, len(toc.Entries))
	for _, e := range toc.Entries {
		if !skip[e.ID] {
			list = append(list, e.ID)
		}
	}
	return list
}

// account records the rows the load counted, for the checks and the caller.
func (p *Plan) account(r *Restored, rows []TableRows) {
	if p.Contents == nil || p.Contents.Archive == nil || rows == nil {
		return
	}
	p.Contents.Archive.ledger = &rowLedger{rows: rows}
	r.Rows = rows
}

// loadPgRestore streams src (the dump) into pg_restore (only list's entries, unless nil),
// and a copy of it into a reader
// of the archive that counts each table's rows.
func (p *Plan) loadPgRestore(ctx context.Context, rep Reporter, r *Restored, read, dump *Meter, src io.Reader, list []int) error {
	run, err := p.startPgRestore(ctx, rep, "", list)
	if err != nil {
		return err
	}
	counter := newStreamCounter()
	stop := sampleProgress(ctx, rep, StageStream, p.Source.Backup.Size, read, dump, run.child.tables)
	streamErr, writeErr := feed(run.stdin, io.TeeReader(src, counter))
	stop()
	if streamErr != nil {
		// The backup is damaged or the run was cancelled: pg_restore must not finish on a
		// stream that failed its integrity check, so stop it before it sees EOF.
		run.kill()
	}
	waitErr := run.wait()
	toc, counts, countErr := counter.finish()
	r.Read, r.Dump, r.Tables = read.Count(), dump.Count(), int(run.child.done.Load())
	r.Warnings = append(r.Warnings, run.child.warnings()...)

	var ae *pgarchive.Error
	damaged := errors.As(countErr, &ae) && !errors.Is(countErr, pgarchive.ErrUnsupported)
	switch {
	case streamErr != nil && ctx.Err() != nil:
		return ctx.Err()
	case streamErr != nil:
		return inBackup(p.Source, streamErr)
	case damaged:
		return inBackup(p.Source, archiveErr(countErr))
	case waitErr != nil:
		msg := run.child.lastError()
		if msg == "" {
			msg = waitErr.Error()
		}
		if writeErr != nil {
			msg += " (it stopped reading the backup)"
		}
		if strings.Contains(msg, "could not read from input file: end of file") {
			// An unwrapped .dump has no framing of its own to say it was cut short:
			// pg_restore's end of file is the only sign.
			return inBackup(p.Source, fmt.Errorf("%w: the archive ends early (%s)", ErrTruncated, msg))
		}
		if serverGone(msg) {
			// Not the backup's fault nor pg_restore's: the server went away under it.
			return fmt.Errorf("%w: the server went away during the restore into %s: %s", ErrDatabase, p.Scratch, msg)
		}
		return fmt.Errorf("%w: pg_restore into %s: %s%s", ErrRestoreTool, p.Scratch, msg, p.sandboxHint(msg))
	}
	if toc != nil && countErr == nil {
		p.account(r, tableRows(toc, counts))
	} else if toc != nil {
		p.account(r, tableRows(toc, nil)) // not countable: every table -1
	}
	return nil
}

// loadParallel loads the archive with the parallel engine; toc was read from br, which
// holds the rest of the stream.
// pg_restore leaves out the entries in skip.
func (p *Plan) loadParallel(ctx context.Context, rep Reporter, r *Restored, read, dump *Meter, toc *pgarchive.Archive, br *bufio.Reader, skip map[int]bool) error {
	var mu sync.Mutex
	var last parallel.Progress
	tables := func() (int, int, string) {
		mu.Lock()
		defer mu.Unlock()
		return last.TablesDone, last.TablesTotal, last.Table
	}
	cfg := parallel.Config{
		Jobs:               p.jobs(),
		MaintenanceWorkers: -1,
		Connect: func(ctx context.Context) (*pgconn.PgConn, error) {
			return p.loadConn().connectEngine(ctx, p.Scratch)
		},
		PgRestore: func(ctx context.Context, phase parallel.Phase, archive []byte, list []int) error {
			kept := list[:0:0]
			for _, id := range list {
				if !skip[id] {
					kept = append(kept, id)
				}
			}
			return p.restoreEntries(ctx, rep, r, string(phase), archive, kept)
		},
		Progress: func(pr parallel.Progress) {
			mu.Lock()
			last = pr
			mu.Unlock()
			rep.Report(Event{Time: time.Now(), Stage: StageStream, Phase: string(pr.Phase), Message: pr.Message,
				Read: read.Count(), Size: p.Source.Backup.Size, Decompressed: dump.Count(), ETA: -1,
				TablesDone: pr.TablesDone, TablesTotal: pr.TablesTotal, Table: pr.Table, Rows: pr.Rows,
				IndexesDone: pr.IndexesDone, IndexesTotal: pr.IndexesTotal})
		},
	}
	stream := &streamErrors{r: br}
	stop := sampleProgress(ctx, rep, StageStream, p.Source.Backup.Size, read, dump, tables)
	res, err := parallel.Restore(ctx, toc, bufio.NewReaderSize(stream, stageBuffer), cfg)
	stop()
	if err != nil && ctx.Err() == nil && stream.err == nil {
		// A damaged backup can fail the load before the check at its end is reached: read
		// on, so that the layers' integrity checks say what is wrong.
		io.Copy(io.Discard, stream)
	}
	r.Read, r.Dump = read.Count(), dump.Count()
	if res != nil {
		r.Tables = res.Tables
		if err == nil {
			p.account(r, tableRows(toc, res.Rows))
			rep.Report(Event{Time: time.Now(), Stage: StageStream, Phase: string(parallel.PhasePostData), Message: fmt.Sprintf("parallel engine: schema %s, load %s, post-data %s; %d tables, %d large objects, %d indexes and constraints built over %d connections",
				res.PreData.Round(time.Millisecond), res.Load.Round(time.Millisecond), res.PostData.Round(time.Millisecond), res.Tables, res.Blobs, res.Built, res.Jobs)})
		}
	}
	var ae *pgarchive.Error
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case stream.err != nil:
		return inBackup(p.Source, stream.err)
	case errors.As(err, &ae):
		return inBackup(p.Source, archiveErr(err))
	case errors.Is(err, ErrRestoreTool):
		return err
	}
	msg := plainPgError(err)
	if serverGone(msg) {
		return fmt.Errorf("%w: the server went away during the restore into %s: %s", ErrDatabase, p.Scratch, msg)
	}
	return fmt.Errorf("%w: parallel restore into %s: %s%s", ErrRestoreTool, p.Scratch, msg, p.sandboxHint(msg))
}

// plainPgError is err's text with the server's message stripped of pgconn's decoration
// ("ERROR: … (SQLSTATE …)"), keeping what the engine said around it.
func plainPgError(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.Replace(err.Error(), pe.Error(), pe.Message, 1)
	}
	return err.Error()
}

// streamErrors remembers the first error of the stream (other than its end): a failure
// of the backup, not of the load.
type streamErrors struct {
	r   io.Reader
	err error
}

func (s *streamErrors) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// restoreEntries runs pg_restore on archive (a header and table of contents, no data),
// restoring the entries of list into the scratch database.
func (p *Plan) restoreEntries(ctx context.Context, rep Reporter, r *Restored, phase string, archive []byte, list []int) error {
	if len(list) == 0 {
		return nil
	}
	run, err := p.startPgRestore(ctx, rep, phase, list)
	if err != nil {
		return err
	}
	_, writeErr := feed(run.stdin, bytes.NewReader(archive))
	waitErr := run.wait()
	r.Warnings = append(r.Warnings, run.child.warnings()...)
	if waitErr != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		msg := run.child.lastError()
		if msg == "" {
			msg = waitErr.Error()
		}
		if writeErr != nil {
			msg += " (it stopped reading the table of contents)"
		}
		if serverGone(msg) {
			return fmt.Errorf("%w: the server went away during the restore into %s: %s", ErrDatabase, p.Scratch, msg)
		}
		return fmt.Errorf("%w: pg_restore (%s) into %s: %s%s", ErrRestoreTool, phase, p.Scratch, msg, p.sandboxHint(msg))
	}
	return nil
}

// pgRestoreRun is one pg_restore child reading from stdin.
type pgRestoreRun struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	child    *restoreChild
	exited   chan struct{}
	stopKill func() bool
	outputs  sync.WaitGroup
	list     chan error
}

// startPgRestore starts pg_restore into the scratch database. With a list, only those
// entries are restored, in that order (--use-list, read from a pipe: nothing is written
// to disk).
func (p *Plan) startPgRestore(ctx context.Context, rep Reporter, phase string, list []int) (*pgRestoreRun, error) {
	run := &pgRestoreRun{child: &restoreChild{rep: rep, total: p.tablesTotal(), phase: phase, whole: phase == ""}, exited: make(chan struct{})}
	args := []string{"--verbose", "--exit-on-error", "--no-password", "--dbname", libpqDatabase(p.Scratch)}
	if p.opts.NoOwner || p.sandbox != nil {
		args = append(args, "--no-owner") // the sandbox's objects get their owners in settleOwners
	}
	var listR, listW *os.File
	if list != nil {
		var err error
		if listR, listW, err = os.Pipe(); err != nil {
			return nil, err
		}
		args = append(args, "--use-list", "/dev/fd/3")
	}
	cmd := exec.Command(p.tools.Restore, args...)
	cmd.Env = p.loadConn().toolEnv(p.Scratch)
	cmd.SysProcAttr = childAttr()
	if listR != nil {
		cmd.ExtraFiles = []*os.File{listR}
	}
	closeList := func() {
		if listR != nil {
			listR.Close()
			listW.Close()
		}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		closeList()
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		closeList()
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		closeList()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		closeList()
		return nil, fmt.Errorf("%w: starting %s: %v", ErrRestoreTool, cmd.Path, err)
	}
	run.cmd, run.stdin = cmd, stdin
	if listR != nil {
		listR.Close() // the child's now
		var b strings.Builder
		for _, id := range list {
			b.WriteString(strconv.Itoa(id) + "\n")
		}
		run.list = make(chan error, 1)
		go func() {
			_, err := io.WriteString(listW, b.String())
			listW.Close()
			run.list <- err
		}()
	}
	// A cancel must stop the child even after the stream was read to its end, while
	// pg_restore still builds indexes and constraints.
	run.stopKill = context.AfterFunc(ctx, func() { killGroup(cmd, run.exited) })
	run.outputs.Add(2)
	go func() { defer run.outputs.Done(); run.child.readStderr(stderr) }()
	go func() { defer run.outputs.Done(); io.Copy(io.Discard, stdout) }()
	return run, nil
}

func (run *pgRestoreRun) kill() { killGroup(run.cmd, run.exited) }

// wait closes the child's stdin and waits for it to exit.
func (run *pgRestoreRun) wait() error {
	run.stdin.Close()
	run.outputs.Wait()
	err := run.cmd.Wait()
	close(run.exited)
	run.stopKill()
	if run.list != nil {
		<-run.list // its pipe is closed: the write has ended
	}
	return err
}

// connectEngine opens a connection for the parallel engine to database. A cancel sends
// the server a cancel request, so an index build stops at once rather than when the
// server next notices its client has gone.
func (c *Conn) connectEngine(ctx context.Context, database string) (*pgconn.PgConn, error) {
	cfg := c.cfg.Copy()
	cfg.Database = database
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 15 * time.Second
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = "drconsole parallel restore"
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 3 * time.Second}
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, connectErr(c, database, err)
	}
	return pc, nil
}

// streamCounter reads a copy of the dump as pg_restore gets it, and counts the rows of
// each table in it.
type streamCounter struct {
	ch   chan []byte
	free chan []byte
	done chan struct{}

	toc  *pgarchive.Archive
	rows map[int]int64
	err  error
}

func newStreamCounter() *streamCounter {
	c := &streamCounter{ch: make(chan []byte, 16), free: make(chan []byte, 18), done: make(chan struct{})}
	go c.run()
	return c
}

// Write hands a copy of p to the counter; it waits only when the counter is 16 writes
// behind.
func (c *streamCounter) Write(p []byte) (int, error) {
	var b []byte
	select {
	case b = <-c.free:
	default:
	}
	c.ch <- append(b[:0], p...)
	return len(p), nil
}

func (c *streamCounter) run() {
	defer close(c.done)
	br := bufio.NewReaderSize(&chanReader{c: c}, stageBuffer)
	c.toc, c.err = pgarchive.ReadTOC(br, false)
	if c.err == nil {
		blocks := c.toc.Blocks(br)
		c.rows, c.err = blocks.CountRows()
		blocks.Close()
	}
	for range c.ch { // what the counter no longer needs: Write must never wait for it
	}
}

// finish waits for the counter to read everything written to it.
func (c *streamCounter) finish() (*pgarchive.Archive, map[int]int64, error) {
	close(c.ch)
	<-c.done
	return c.toc, c.rows, c.err
}

type chanReader struct {
	c   *streamCounter
	cur []byte
	buf []byte
}

func (r *chanReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.buf != nil {
			select {
			case r.c.free <- r.buf:
			default:
			}
			r.buf = nil
		}
		b, ok := <-r.c.ch
		if !ok {
			return 0, io.EOF
		}
		r.cur, r.buf = b, b
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}
