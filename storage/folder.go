package storage

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The folders of a location that hold its WAL archive and its base backups:
// s3://bucket/prefix/wal/ as the runbook has it and s3://bucket/prefix/postgres/base/,
// BACKUP_DIR/wal and BACKUP_DIR/base for a directory. Location.List lists neither.
const (
	walDirName  = "wal"
	baseDirName = "base"
)

// Folder is one of a location's folders that are not backups in the runbook's sense: its
// WAL archive (WALOf) or its base backups (BasesOf). Names are plain file names; nothing
// in it is ever overwritten.
type Folder interface {
	// Name is the location's name, String where the archive is.
	Name() string
	String() string
	// Find lists the archived files whose names start with prefix, in name order: one LIST
	// request for S3, whatever the archive's size.
	Find(ctx context.Context, prefix string) ([]Backup, error)
	// Open streams a file Find returned.
	Open(ctx context.Context, b Backup) (io.ReadCloser, error)
	// Put stores a new file atomically; errors.Is(err, ErrExists) when the name is taken.
	Put(ctx context.Context, name string, r io.Reader) (Backup, error)
}

// WALOf is the WAL archive of a location.
func WALOf(loc Location) Folder { return folderOf(loc, walDirName, walDir) }

// BasesOf is the base backups of a location (drconsole basebackup).
func BasesOf(loc Location) Folder { return folderOf(loc, baseDirName, baseDir) }

func folderOf(loc Location, dirName, s3Prefix string) Folder {
	switch l := loc.(type) {
	case *Dir:
		return &dirWAL{Dir: NewDir(l.name, filepath.Join(l.root, dirName))}
	case *S3:
		l.mu.Lock()
		defer l.mu.Unlock()
		return &s3WAL{S3: &S3{name: l.name, bucket: l.bucket, prefix: l.prefix + s3Prefix, client: l.client, opts: l.opts, config: l.config,
			region: l.region, regionKnown: l.regionKnown, endpointDesc: l.endpointDesc}, contentNamed: dirName == walDirName}
	case *unavailable:
		return &unavailableWAL{u: l}
	}
	return &unavailableWAL{u: &unavailable{name: loc.Name(), where: loc.String(), err: fmt.Errorf("%T has no %s folder", loc, dirName)}}
}

type dirWAL struct{ *Dir }

func (d *dirWAL) Find(ctx context.Context, prefix string) ([]Backup, error) {
	if strings.ContainsAny(prefix, `/\`) {
		return nil, fmt.Errorf("file name %q is not a plain file name", prefix)
	}
	entries, err := os.ReadDir(d.root)
	if os.IsNotExist(err) {
		// No archive yet, but the location itself must be there: a missing mount is
		// not an empty archive.
		if _, perr := os.Stat(filepath.Dir(d.root)); perr != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, filepath.Dir(d.root), unwrapPathErr(perr))
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, d.root, unwrapPathErr(err))
	}
	var out []Backup
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) || strings.HasPrefix(e.Name(), tempPrefix) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, d.backup(e.Name(), info))
	}
	return out, nil // ReadDir sorts by name
}

type s3WAL struct {
	*S3
	// contentNamed: the WAL archive, whose files drconsole names by their content's
	// SHA-256 after listing the name (wal.Pusher), so Put need not look again.
	contentNamed bool
}

func (s *s3WAL) Put(ctx context.Context, name string, r io.Reader) (Backup, error) {
	return s.put(ctx, name, r, s.contentNamed)
}

func (s *s3WAL) String() string { return "s3://" + s.bucket + "/" + s.prefix }

func (s *s3WAL) Find(ctx context.Context, prefix string) ([]Backup, error) {
	if strings.ContainsAny(prefix, `/\`) {
		return nil, fmt.Errorf("file name %q is not a plain file name", prefix)
	}
	if err := s.ensureRegion(ctx); err != nil {
		return nil, err
	}
	var out []Backup
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix + prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx, s.regionOpt)
		if err != nil {
			return nil, s.fail("", err)
		}
		out = s.appendObjects(out, page.Contents)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

type unavailableWAL struct{ u *unavailable }

func (w *unavailableWAL) Name() string   { return w.u.name }
func (w *unavailableWAL) String() string { return w.u.where }
func (w *unavailableWAL) Find(context.Context, string) ([]Backup, error) {
	return nil, w.u.fail()
}
func (w *unavailableWAL) Open(context.Context, Backup) (io.ReadCloser, error) {
	return nil, w.u.fail()
}
func (w *unavailableWAL) Put(context.Context, string, io.Reader) (Backup, error) {
	return Backup{}, w.u.fail()
}
