package storage

import (
	"context"
	"errors"
	"io"
)

// Location is a place backups are kept. Implementations: Dir (a local directory) and S3
// (a bucket and prefix). Every implementation passes the contract suite in contract_test.go.
type Location interface {
	// Name is the operator's short name for the location ("local", "primary", "secondary").
	Name() string
	// String is where it is, e.g. "/var/backups/spywatcher" or "s3://spywatcher-backups/postgres/".
	String() string
	// List returns every backup in the location, newest first. Files whose names the
	// backup job does not make are listed too, as unknown, never dropped.
	List(ctx context.Context) ([]Backup, error)
	// Stat finds one backup by name or key; ErrNotFound when there is none.
	Stat(ctx context.Context, name string) (Backup, error)
	// Open streams a backup from its first byte. The stream fails, rather than splices,
	// if the stored object changes while it is read.
	Open(ctx context.Context, b Backup) (io.ReadCloser, error)
	// Put stores a new backup under name from r, atomically: readers see the whole
	// backup or nothing. If r fails, nothing is left behind and its error is returned.
	Put(ctx context.Context, name string, r io.Reader) (Backup, error)
}

var (
	// ErrNotFound: the location has no backup of that name.
	ErrNotFound = errors.New("no such backup")
	// ErrUnreachable: the location cannot be listed or read at all.
	ErrUnreachable = errors.New("location unreachable")
	// ErrExists: Put found the name taken; nothing is ever overwritten.
	ErrExists = errors.New("already exists")
	// ErrChanged: the backup was replaced or changed while it was being read.
	ErrChanged = errors.New("backup changed while it was being read")
)
