// Package recovery is the work of bringing a database back: the streaming pipeline
// (source → meter → decrypt → decompress → pg_restore/psql), the safe restore into a
// scratch database with checks and a swap, integrity checks, verification and backups.
package recovery

import "errors"

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
)
