// Package recovery is the work of bringing a database back: the streaming pipeline
// (source → meter → decrypt → decompress → pg_restore, or drconsole itself for plain SQL), the safe restore into a
// scratch database with checks and a swap, integrity checks, verification and backups.
package recovery

import (
	"errors"
	"fmt"
)

// Sentinel errors; the command line maps them to exit codes, the console to advice.
// Each wrapping error says what failed on what, in one line.
var (
	ErrWrongKey     = errors.New("wrong decryption key or passphrase")
	ErrNoKey        = errors.New("backup is encrypted and no key or passphrase was given")
	ErrCorrupt      = errors.New("backup is corrupt")
	ErrTruncated    = errors.New("backup is truncated")
	ErrNotBackup    = errors.New("not a PostgreSQL backup")
	ErrDatabase     = errors.New("database unreachable")
	ErrChecksFailed = errors.New("integrity checks failed")
	ErrPreflight    = errors.New("refused before starting")
	ErrCancelled    = errors.New("cancelled")
	ErrRestoreTool  = errors.New("restore tool failed")
	// ErrNoDatabase: the server answers but has no database of that name (a typo, or a
	// fresh host). errors.Is(err, ErrDatabase) holds too.
	ErrNoDatabase = fmt.Errorf("%w", ErrDatabase)
	// ErrNeedPassphrase: a passphrase is needed (for a protected secret key, or a
	// symmetric backup) and none was given. errors.Is(err, ErrNoKey) holds too.
	ErrNeedPassphrase = fmt.Errorf("%w", ErrNoKey)
	// ErrNotRecipient: the secret keys given are not among the backup's recipients.
	// errors.Is(err, ErrWrongKey) holds too.
	ErrNotRecipient = fmt.Errorf("%w", ErrWrongKey)
	// ErrOwners: roles the archive's objects belong to are missing on the server or out of
	// the connecting role's reach; restoring without ownership (NoOwner) is the way round.
	ErrOwners = fmt.Errorf("%w", ErrPreflight)
	// ErrWrongDatabase: the backup is of another database than the target (see
	// WrongDatabaseError). It is a pre-flight refusal: errors.Is(err, ErrPreflight) holds too.
	ErrWrongDatabase = errors.New("backup of another database")
)

// WrongDatabaseError refuses a backup of another database than the target: restoring it
// under the live name would replace production with the wrong data. Naming the backup's
// database (Options.FromDB) is the operator's way to say it is meant.
type WrongDatabaseError struct {
	Archive string // the database the backup was taken from
	Target  string
	FromDB  string // what the operator said it was taken from, when they said
}

func (e *WrongDatabaseError) Error() string {
	if e.FromDB != "" {
		return fmt.Sprintf("%v: the backup is of database %q, not %q as --from-db says", ErrPreflight, e.Archive, e.FromDB)
	}
	return fmt.Sprintf("%v: the backup is of database %q, not %q; to restore it into %q anyway, name its database (--from-db %s)", ErrPreflight, e.Archive, e.Target, e.Target, e.Archive)
}

func (e *WrongDatabaseError) Is(target error) bool {
	return target == ErrWrongDatabase || target == ErrPreflight
}
