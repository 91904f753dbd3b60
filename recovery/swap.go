package recovery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The swap is one transaction: both renames (and the kept copy's mark) commit together
// or not at all. Nothing is committed before it — in particular never ALLOW_CONNECTIONS
// false on the live database — so a kill, a server restart or a cut connection at any
// moment leaves the live name holding either the old database or the restored one, and
// accepting connections. New sessions cannot slip in: once the rename holds the database's
// lock, a connecting session waits for it and then fails ("It seems to have just been
// dropped or renamed"); the ones already connected, or waiting, are ended by a second
// session while the rename waits for them to go. Afterwards the catalog, not what was
// intended, says what happened: database OIDs never change on a rename.

// SwapIntent is what a swap is about to do, with the identities that tell afterwards
// whether it happened.
type SwapIntent struct {
	Mode       Mode   `json:"mode"`
	Target     string `json:"target"`
	Scratch    string `json:"scratch"`
	Kept       string `json:"kept,omitempty"`
	TargetOID  uint32 `json:"target_oid,omitempty"` // ModeSwap: the live database before the swap
	ScratchOID uint32 `json:"scratch_oid"`

	liveComment string    // the live database's own comment, carried to the restored copy
	pid         uint32    // the swapping session, to be sure it is gone before judging
	started     time.Time // its backend_start: a PID alone may be reused after a restart
}

// SwapOptions are the operator's decisions about a swap.
type SwapOptions struct {
	// Intent is called with what the swap will do just before it does it; an error stops
	// the swap before anything changes (the journal could not record it, say).
	Intent func(SwapIntent) error
	// AcceptMissingTables: the operator saw the tables that live has and the restored copy
	// lacks, and swaps anyway.
	AcceptMissingTables bool
}

// SwapState is where a target stands, as the catalog says.
type SwapState string

const (
	SwapDone    SwapState = "swapped"     // the restored copy holds the live name
	SwapNotDone SwapState = "not swapped" // the live name holds what it held before
	SwapUnknown SwapState = "unknown"     // the server could not be asked, or holds something else
)

// Swapped is the result of a swap.
type Swapped struct {
	Live string // the restored database, under the live name
	Kept string // the previous live database, kept for rollback and forensics
	// Note: something the operator should know, e.g. the swap committed although the
	// connection was lost before the server's answer.
	Note string
}

// ErrSwapUnknown: the swap was interrupted and the server could not be asked whether it
// committed. The next drconsole that reaches the server finds out.
var ErrSwapUnknown = fmt.Errorf("%w: whether the swap happened is not known", ErrDatabase)

// How many times a swap is tried when sessions keep connecting to the live database, and
// how long a cleanup or a check of the catalog waits for a restarting server.
var (
	swapAttempts  = 5
	settleTimeout = 60 * time.Second
)

// Swap puts the restored database in place. ModeSwap: the live database becomes Kept and
// the scratch database takes its name, in one transaction, after every session on both
// has been ended. ModeCreate: the scratch database takes the target's name. The caller
// must have had the operator confirm by typing the target's name. On error the live
// database holds what it held (checked on the server) and the restored copy is still
// there to swap again or abandon — unless errors.Is(err, ErrSwapUnknown).
func (r *Restored) Swap(ctx context.Context, rep Reporter, opts SwapOptions) (*Swapped, error) {
	rep = orDiscard(rep)
	p := r.Plan
	switch {
	case p.Mode == ModeTest:
		return nil, fmt.Errorf("a test restore into %s is not swapped", p.Target)
	case r.finished:
		return nil, fmt.Errorf("the restore into %s is not waiting for a swap (it failed, was abandoned or swapped)", p.Scratch)
	}
	if missing := Unconfirmed(r.Checks); len(missing) > 0 && !opts.AcceptMissingTables {
		return nil, fmt.Errorf("%w: %s: %s; swap only when that is expected (confirm it, or --accept-missing-tables)", ErrChecksFailed, missing[0].Name, missing[0].Detail)
	}
	say := func(format string, args ...any) {
		rep.Report(Event{Time: time.Now(), Stage: StageSwap, Message: fmt.Sprintf(format, args...)})
	}
	if err := p.lock.ensure(ctx); err != nil {
		return nil, err
	}
	admin, err := connectAdminAs(ctx, p.opts.Conn, truncateName("drconsole: swap of "+p.Target))
	if err != nil {
		return nil, err
	}
	defer admin.Close(context.Background())
	in, err := p.swapIntent(ctx, admin)
	if err != nil {
		return nil, err
	}
	if opts.Intent != nil {
		if err := opts.Intent(in); err != nil {
			return nil, fmt.Errorf("swap not started, %s is unchanged: %w", p.Target, err)
		}
	}
	faultpoint(ctx, "swap-begin")
	sw, err := p.swap(ctx, admin, in, say)
	if err == nil {
		r.finished = true
		p.lock.release()
		return sw, nil
	}
	// Whatever went wrong, and whenever: the catalog says what happened.
	state, serr := SwapStateOf(p.opts.Conn, in)
	switch state {
	case SwapDone:
		r.finished = true
		p.lock.release()
		note := fmt.Sprintf("the swap committed, although drconsole then saw: %v", oneLineErr(err))
		if ctx.Err() != nil {
			note = "the interrupt came after the swap had committed"
		}
		say("swapped: %s is the restored database (%s)", p.Target, note)
		return &Swapped{Live: p.Target, Kept: in.Kept, Note: note}, nil
	case SwapNotDone:
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: swap of %s stopped before it happened; %s is unchanged (checked on the server)", ErrCancelled, p.Target, p.Target)
		}
		return nil, fmt.Errorf("swap did not happen, %s is unchanged (checked on the server): %w", p.Target, err)
	}
	r.unknown = true
	return nil, fmt.Errorf("%w: the swap of %s was interrupted (%v) and the server cannot tell yet (%v); run drconsole check once it answers", ErrSwapUnknown, p.Target, oneLineErr(err), serr)
}

// swapIntent reads what the swap needs from the catalog: the OIDs that tell afterwards
// whether it happened, and the live database's own comment.
func (p *Plan) swapIntent(ctx context.Context, admin *pgx.Conn) (SwapIntent, error) {
	in := SwapIntent{Mode: p.Mode, Target: p.Target, Scratch: p.Scratch, Kept: p.Kept}
	if err := admin.QueryRow(ctx, `SELECT pg_backend_pid(), backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()`).Scan(&in.pid, &in.started); err != nil {
		return in, fmt.Errorf("%w: %v", ErrDatabase, pgMessage(err))
	}
	if err := admin.QueryRow(ctx, `SELECT oid FROM pg_database WHERE datname = $1`, p.Scratch).Scan(&in.ScratchOID); err != nil {
		return in, fmt.Errorf("%w: the restored copy %s is not on the server any more: %v", ErrDatabase, p.Scratch, pgMessage(err))
	}
	err := admin.QueryRow(ctx, `SELECT oid, coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = $1`, p.Target).Scan(&in.TargetOID, &in.liveComment)
	switch {
	case p.Mode == ModeSwap && errors.Is(err, pgx.ErrNoRows):
		return in, fmt.Errorf("%w: %s no longer exists on %s: nothing to swap with (restore again to create it)", ErrDatabase, p.Target, p.Server)
	case p.Mode == ModeCreate && err == nil:
		return in, fmt.Errorf("%w: %s was created on %s since the pre-flight; not replaced (restore again to swap it)", ErrDatabase, p.Target, p.Server)
	case errors.Is(err, pgx.ErrNoRows):
		err = nil
	}
	if err != nil {
		return in, fmt.Errorf("%w: %v", ErrDatabase, pgMessage(err))
	}
	if _, ours := parseMarker(in.liveComment); ours {
		in.liveComment = "" // a mark from an earlier restore is not the database's own comment
	}
	return in, nil
}

func (p *Plan) swap(ctx context.Context, admin *pgx.Conn, in SwapIntent, say func(string, ...any)) (*Swapped, error) {
	names, oids := []string{in.Scratch}, []int64{int64(in.ScratchOID)}
	if in.Mode == ModeSwap {
		names, oids = append(names, in.Target), append(oids, int64(in.TargetOID))
		say("ending sessions connected to %s and %s", in.Target, in.Scratch)
	}
	stop := endSessionsWhile(ctx, p.opts.Conn, names, oids, in.pid)
	defer stop()
	for _, db := range names {
		if err := waitNoSessions(ctx, admin, db, 15*time.Second); err != nil {
			return nil, err
		}
	}
	for attempt := 1; ; attempt++ {
		if in.Mode == ModeSwap {
			say("renaming %s to %s and %s to %s in one transaction", in.Target, in.Kept, in.Scratch, in.Target)
		} else {
			say("renaming %s to %s", in.Scratch, in.Target)
		}
		err := p.renames(ctx, admin, in)
		if err == nil {
			break
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || (pe.Code != "55006" && pe.Code != "55P03") || attempt >= swapAttempts || ctx.Err() != nil {
			return nil, fmt.Errorf("%w: swapping %s and %s: %v", ErrDatabase, in.Target, in.Scratch, pgMessage(err))
		}
		// Sessions kept connecting, or holding a lock on a database, faster than they were
		// ended; nothing changed.
		say("sessions keep using %s (%s); trying again (%d of %d)", in.Target, pgMessage(err), attempt+1, swapAttempts)
	}
	faultpoint(ctx, "swap-committed")
	// Read back what the catalog now says, rather than trust the commit's answer.
	var live uint32
	if err := admin.QueryRow(ctx, `SELECT oid FROM pg_database WHERE datname = $1`, in.Target).Scan(&live); err != nil {
		return nil, fmt.Errorf("%w: reading the swap back: %v", ErrDatabase, pgMessage(err))
	}
	if live != in.ScratchOID {
		return nil, fmt.Errorf("%w: after the swap, %s is not the restored copy (OID %d)", ErrDatabase, in.Target, live)
	}
	if in.Mode == ModeSwap {
		say("swapped: %s is the restored database; the previous one is kept as %s", in.Target, in.Kept)
		return &Swapped{Live: in.Target, Kept: in.Kept}, nil
	}
	say("renamed %s to %s", in.Scratch, in.Target)
	return &Swapped{Live: in.Target}, nil
}

// renames is the swap's one transaction.
func (p *Plan) renames(ctx context.Context, admin *pgx.Conn, in SwapIntent) error {
	live, scratch, kept := pgx.Identifier{in.Target}.Sanitize(), pgx.Identifier{in.Scratch}.Sanitize(), pgx.Identifier{in.Kept}.Sanitize()
	return pgx.BeginFunc(ctx, admin, func(tx pgx.Tx) error {
		// Nothing may hold the swap, and the swap may hold nothing, for long: whoever holds
		// a lock on either database is ended meanwhile (endSessionsWhile), so a lock not
		// granted in 5 s is a retry; and a drconsole stopped (SIGSTOP, a frozen VM) inside
		// this transaction is rolled back by the server after 10 s, so it never holds the
		// live database's name hostage.
		for _, set := range []string{"SET LOCAL lock_timeout = '5s'", "SET LOCAL idle_in_transaction_session_timeout = '10s'"} {
			if _, err := tx.Exec(ctx, set); err != nil {
				return err
			}
		}
		var stmts []string
		if in.Mode == ModeSwap {
			if _, err := tx.Exec(ctx, "ALTER DATABASE "+live+" RENAME TO "+kept); err != nil {
				return err
			}
			faultpoint(ctx, "swap-renamed")
			stmts = append(stmts, "ALTER DATABASE "+scratch+" RENAME TO "+live,
				commentStatement(in.Kept, p.marker(RoleKept).comment()),
				commentStatement(in.Target, in.liveComment))
		} else {
			stmts = append(stmts, "ALTER DATABASE "+scratch+" RENAME TO "+live, commentStatement(in.Target, ""))
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
}

// SwapStateOf asks the server where a swap stands, on a fresh connection with its own
// time limit (the caller's context may be cancelled, the server may be restarting). The
// session that ran the swap is ended first, so that a COMMIT still on its way cannot
// land after the answer.
func SwapStateOf(c *Conn, in SwapIntent) (SwapState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	admin, err := connectSettling(ctx, c)
	if err != nil {
		return SwapUnknown, err
	}
	defer admin.Close(context.Background())
	for in.pid != 0 {
		// One statement finds and ends it, so a PID reused meanwhile is never hit.
		var ended int
		err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2`, in.pid, in.started).Scan(&ended)
		if err != nil {
			return SwapUnknown, fmt.Errorf("%w: %v", ErrDatabase, pgMessage(err))
		}
		if ended == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return SwapUnknown, fmt.Errorf("the swapping session %d did not end", in.pid)
		case <-time.After(50 * time.Millisecond):
		}
	}
	var live uint32
	err = admin.QueryRow(ctx, `SELECT oid FROM pg_database WHERE datname = $1`, in.Target).Scan(&live)
	switch {
	case err == nil && live == in.ScratchOID:
		return SwapDone, nil
	case err == nil && in.Mode == ModeSwap && live == in.TargetOID:
		return SwapNotDone, nil
	case errors.Is(err, pgx.ErrNoRows) && in.Mode == ModeCreate:
		return SwapNotDone, nil
	case errors.Is(err, pgx.ErrNoRows):
		return SwapUnknown, fmt.Errorf("no database is named %s on %s", in.Target, c.Server())
	case err == nil:
		return SwapUnknown, fmt.Errorf("%s on %s is neither the old database nor the restored copy (OID %d)", in.Target, c.Server(), live)
	}
	return SwapUnknown, fmt.Errorf("%w: %v", ErrDatabase, pgMessage(err))
}

// connectSettling connects to the maintenance database, trying again while the server
// restarts, until ctx ends.
func connectSettling(ctx context.Context, c *Conn) (*pgx.Conn, error) {
	for {
		admin, err := connectAdmin(ctx, c)
		if err == nil {
			return admin, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// endSessionsWhile ends, from a session of its own, every session on the named databases,
// every session waiting to connect to them (those show only in pg_locks) and every session
// holding a lock on them from another database (an open COMMENT ON DATABASE, GRANT …),
// until stop is called: the rename waits up to 5 s for other sessions to go and for its
// lock, and this makes them go.
func endSessionsWhile(ctx context.Context, c *Conn, names []string, oids []int64, except uint32) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := connectAdminAs(ctx, c, "drconsole: swap (ending sessions)")
		if err != nil {
			return
		}
		defer conn.Close(context.Background())
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			_, _ = conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM (
				SELECT pid FROM pg_stat_activity WHERE datname = ANY($1) AND pid <> $3 AND pid <> pg_backend_pid()
				UNION SELECT pid FROM pg_locks WHERE locktype = 'object' AND classid = 'pg_database'::regclass
					AND objid::bigint = ANY($2) AND pid <> $3 AND pid <> pg_backend_pid()) s`, names, oids, except)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// waitNoSessions waits until no other session is connected to database.
func waitNoSessions(ctx context.Context, admin *pgx.Conn, database string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var left int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, database).Scan(&left); err != nil {
			return fmt.Errorf("%w: ending sessions on %s: %v", ErrDatabase, database, pgMessage(err))
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d sessions on %s would not end", ErrDatabase, left, database)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Abandon drops the scratch database (not in ModeTest, where the operator asked for it)
// and frees the target for another restore.
func (r *Restored) Abandon(ctx context.Context) error {
	defer r.Plan.lock.release()
	if r.finished || r.Plan.Mode == ModeTest {
		return nil
	}
	r.finished = true
	return dropDatabase(r.Plan.opts.Conn, r.Plan.Scratch)
}

// Drop removes the restored database whatever the mode (verify --restore-test).
func (r *Restored) Drop(ctx context.Context) error {
	defer r.Plan.lock.release()
	r.finished = true
	return dropDatabase(r.Plan.opts.Conn, r.Database)
}

// dropDatabase drops a scratch database even when the restore was cancelled or the server
// is restarting: on a fresh connection, with its own time limit, trying again while the
// server cannot be reached.
func dropDatabase(c *Conn, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	for {
		admin, err := connectSettling(ctx, c)
		if err != nil {
			return fmt.Errorf("dropping %s: %v", name, oneLineErr(err))
		}
		_, err = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		admin.Close(context.Background())
		var pe *pgconn.PgError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &pe), ctx.Err() != nil:
			return fmt.Errorf("dropping %s: %v", name, pgMessage(err))
		}
		// The connection broke under it: the server went away; try again.
	}
}

func oneLineErr(err error) string {
	if err == nil {
		return ""
	}
	return pgMessage(err)
}
