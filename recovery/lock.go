package recovery

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// One restore at a time works on a target, whichever machine or state directory runs it:
// the restore holds a session advisory lock on the server from pre-flight to the end of
// the swap or abandon. The server releases it when that session ends, so a killed
// drconsole never leaves it behind. Every drconsole takes it in the same maintenance
// database (advisory locks are per database), keyed by the target's name.

// lockKey is the text hashed into the lock's key; the server does the hashing, so every
// version of drconsole agrees on it.
func lockKey(target string) string { return "drconsole restore " + target }

// targetLock is the held lock and the session that holds it.
type targetLock struct {
	c      *Conn
	target string
	holder string // application_name of the session: who holds it, for the next one
	conn   *pgx.Conn
}

// Holder describes this process for the lock and for what it leaves on the server:
// "alice@bastion-1 pid 4242".
func Holder() string {
	host, _ := os.Hostname()
	user := os.Getenv("SUDO_USER")
	if user == "" {
		user = os.Getenv("USER")
	}
	if user == "" {
		user = fmt.Sprintf("uid %d", os.Getuid())
	}
	return fmt.Sprintf("%s@%s pid %d", user, host, os.Getpid())
}

// lockTarget takes the target's lock or says who holds it.
func lockTarget(ctx context.Context, c *Conn, target string) (*targetLock, error) {
	// Who and where first: application_name keeps 63 bytes, and a long target is the part
	// the operator already knows.
	l := &targetLock{c: c, target: target, holder: truncateName("drconsole " + Holder() + ": restore of " + target)}
	if err := l.acquire(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *targetLock) acquire(ctx context.Context) error {
	conn, err := connectAdminAs(ctx, l.c, l.holder)
	if err != nil {
		return err
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, lockKey(l.target)).Scan(&got); err != nil {
		conn.Close(context.Background())
		return fmt.Errorf("%w: taking the restore lock of %s: %v", ErrDatabase, l.target, pgMessage(err))
	}
	if !got {
		who := lockHolder(ctx, conn, l.target)
		conn.Close(context.Background())
		return fmt.Errorf("%w: another restore of %q is running on %s (%s); wait for it to finish, or stop it", ErrPreflight, l.target, l.c.Server(), who)
	}
	l.conn = conn
	return nil
}

// lockHolder describes the session that holds a target's lock, as well as it can.
func lockHolder(ctx context.Context, conn *pgx.Conn, target string) string {
	var app, from string
	var since time.Time
	err := conn.QueryRow(ctx, `WITH k AS (SELECT hashtextextended($1, 0) AS key)
		SELECT coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local socket'), a.backend_start
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid, k
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND l.classid::bigint = ((k.key >> 32) & 4294967295) AND l.objid::bigint = (k.key & 4294967295)
		LIMIT 1`, lockKey(target)).Scan(&app, &from, &since)
	if err != nil {
		return "held by another session"
	}
	app = strings.TrimPrefix(app, "drconsole ")
	return fmt.Sprintf("%s, from %s, since %s", app, from, since.UTC().Format("2006-01-02 15:04:05 UTC"))
}

// held reports whether a restore of target holds its lock now, without taking it.
func lockHeld(ctx context.Context, conn *pgx.Conn, target string) (bool, error) {
	var held bool
	err := conn.QueryRow(ctx, `WITH k AS (SELECT hashtextextended($1, 0) AS key)
		SELECT EXISTS (SELECT 1 FROM pg_locks l, k
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND l.classid::bigint = ((k.key >> 32) & 4294967295) AND l.objid::bigint = (k.key & 4294967295))`, lockKey(target)).Scan(&held)
	return held, err
}

// ensure makes sure the lock is still held before an irreversible step. A server restart
// or a cut connection ends the session and with it the lock: it is taken again, unless
// another restore of the target has taken it meanwhile.
func (l *targetLock) ensure(ctx context.Context) error {
	if l.conn != nil {
		var held bool
		err := l.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND granted)`).Scan(&held)
		if err == nil && held {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		l.conn.Close(context.Background())
		l.conn = nil
	}
	if err := l.acquire(ctx); err != nil {
		return fmt.Errorf("%w: the restore lock of %s was lost (server restarted or connection cut) and cannot be taken again: %v", ErrDatabase, l.target, err)
	}
	return nil
}

// release gives the lock back; closing the session is enough, and it works whatever
// state the caller's context is in.
func (l *targetLock) release() {
	if l == nil || l.conn == nil {
		return
	}
	l.conn.Close(context.Background())
	l.conn = nil
}

// truncateName keeps a name within PostgreSQL's 63 bytes without splitting a character.
func truncateName(s string) string {
	if len(s) <= maxIdentifier {
		return s
	}
	return strings.ToValidUTF8(s[:maxIdentifier], "")
}

// connectAdminAs is connectAdmin with a name in pg_stat_activity.
func connectAdminAs(ctx context.Context, c *Conn, appName string) (*pgx.Conn, error) {
	conn, err := c.connect(ctx, "postgres", appName)
	if errors.Is(err, ErrNoDatabase) {
		conn, err = c.connect(ctx, "template1", appName)
	}
	return conn, err
}
