package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"drconsole/incident"
	"drconsole/incident/notify"
	"drconsole/recovery"
	"drconsole/storage"
)

// Exit codes, documented in the README. One place maps errors to them.
const (
	exitOK          = 0
	exitFailure     = 1   // anything not below
	exitUsage       = 2   // bad command line or configuration
	exitCorrupt     = 3   // backup unreadable, truncated, corrupt or not a backup
	exitKey         = 4   // wrong or missing decryption key or passphrase
	exitDatabase    = 5   // database server unreachable, or the database does not exist
	exitChecks      = 6   // integrity checks failed (or the restore itself reported errors)
	exitPreflight   = 7   // refused before starting: missing privileges or roles, tools too old
	exitUnreachable = 8   // backup location unreachable, or no such backup
	exitSignature   = 9   // the backup is not signed by a trusted key, or its signature does not verify
	exitJournal     = 10  // the incident journal could not be written (the work itself is described on stderr)
	exitNotify      = 11  // a notification did not reach one of its channels
	exitCancelled   = 130 // interrupted (Ctrl-C, hang-up, SIGTERM); nothing was left half-done
)

// usageError marks a mistake on the command line.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func exitCode(err error) int {
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, context.Canceled), errors.Is(err, recovery.ErrCancelled):
		return exitCancelled
	case errors.Is(err, incident.ErrJournal):
		return exitJournal
	case errors.Is(err, notify.ErrNotDelivered):
		return exitNotify
	case errors.Is(err, recovery.ErrWrongKey), errors.Is(err, recovery.ErrNoKey):
		return exitKey
	case errors.Is(err, recovery.ErrUnsigned), errors.Is(err, recovery.ErrBadSignature):
		return exitSignature
	case errors.Is(err, recovery.ErrCorrupt), errors.Is(err, recovery.ErrTruncated), errors.Is(err, recovery.ErrNotBackup):
		return exitCorrupt
	case errors.Is(err, recovery.ErrDatabase):
		return exitDatabase
	case errors.Is(err, recovery.ErrChecksFailed), errors.Is(err, recovery.ErrRestoreTool):
		return exitChecks
	case errors.Is(err, recovery.ErrPreflight):
		return exitPreflight
	case errors.Is(err, storage.ErrUnreachable), errors.Is(err, storage.ErrNotFound):
		return exitUnreachable
	case errors.Is(err, storage.ErrChanged):
		return exitCorrupt
	}
	return exitFailure
}
