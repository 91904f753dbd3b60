package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DefaultDir is where the backup job keeps its local copies.
const DefaultDir = "/var/backups/spywatcher"

// Dir is a local directory of backups (and its subdirectories).
type Dir struct {
	name string
	root string
}

var _ Location = (*Dir)(nil)

// NewDir is a location over the directory root, named name.
func NewDir(name, root string) *Dir { return &Dir{name: name, root: filepath.Clean(root)} }

func (d *Dir) Name() string   { return d.name }
func (d *Dir) String() string { return d.root }

// tempPrefix marks files Put is still writing; List skips them.
const tempPrefix = ".drconsole-"

func (d *Dir) List(ctx context.Context) ([]Backup, error) {
	if _, err := os.Stat(d.root); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, d.root, unwrapPathErr(err))
	}
	var out []Backup
	err := filepath.WalkDir(d.root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == d.root {
				return err
			}
			return nil // an unreadable subdirectory does not hide the rest
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if e.IsDir() && (p == filepath.Join(d.root, walDirName) || p == filepath.Join(d.root, baseDirName)) {
			return filepath.SkipDir // the WAL archive and base backups: listed by WALOf and BasesOf
		}
		if e.IsDir() || strings.HasPrefix(e.Name(), tempPrefix) || !e.Type().IsRegular() {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(d.root, p)
		out = append(out, d.backup(filepath.ToSlash(rel), info))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, d.root, unwrapPathErr(err))
	}
	SortNewestFirst(out)
	return out, nil
}

func (d *Dir) backup(key string, info fs.FileInfo) Backup {
	b := ParseName(path.Base(key))
	b.Key = key
	b.Location = d.name
	b.Size = info.Size()
	b.Modified = info.ModTime().UTC()
	return b
}

// resolve turns a key into a path inside the directory, refusing keys that escape it.
func (d *Dir) resolve(key string) (string, error) {
	clean := path.Clean("/" + filepath.ToSlash(key))[1:]
	if clean == "" || clean != strings.TrimPrefix(filepath.ToSlash(key), "./") || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("backup name %q is not a plain name inside %s", key, d.root)
	}
	return filepath.Join(d.root, filepath.FromSlash(clean)), nil
}

func (d *Dir) Stat(ctx context.Context, name string) (Backup, error) {
	p, err := d.resolve(name)
	if err != nil {
		return Backup{}, err
	}
	info, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Backup{}, fmt.Errorf("%w: %q in %s", ErrNotFound, name, d.root)
	}
	if err != nil {
		return Backup{}, fmt.Errorf("%w: %s: %w", ErrUnreachable, d.root, unwrapPathErr(err))
	}
	if !info.Mode().IsRegular() {
		return Backup{}, fmt.Errorf("%s is not a regular file", p)
	}
	return d.backup(name, info), nil
}

func (d *Dir) Open(ctx context.Context, b Backup) (io.ReadCloser, error) {
	p, err := d.resolve(b.Key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q in %s", ErrNotFound, b.Key, d.root)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, unwrapPathErr(err))
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if b.Size > 0 && (info.Size() != b.Size || (!b.Modified.IsZero() && !info.ModTime().Equal(b.Modified))) {
		f.Close()
		return nil, fmt.Errorf("%w: %s (listed %d bytes, now %d)", ErrChanged, b.Name, b.Size, info.Size())
	}
	return &pinnedFile{File: f, size: info.Size(), mod: info.ModTime(), name: b.Name}, nil
}

// pinnedFile fails at the end of the stream if the file was rewritten while it was read.
type pinnedFile struct {
	*os.File
	size int64
	mod  time.Time
	name string
	read int64
}

func (p *pinnedFile) Read(b []byte) (int, error) {
	n, err := p.File.Read(b)
	p.read += int64(n)
	if err == io.EOF {
		info, serr := p.File.Stat()
		if serr == nil && (info.Size() != p.size || !info.ModTime().Equal(p.mod) || p.read != p.size) {
			return n, fmt.Errorf("%w: %s", ErrChanged, p.name)
		}
	}
	return n, err
}

// removeStale removes what killed writes left: temporary files no live process holds
// locked. A write in progress holds its lock and is left alone.
func (d *Dir) removeStale() {
	entries, err := os.ReadDir(d.root)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tempPrefix) || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(d.root, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			os.Remove(p)
		}
		f.Close()
	}
}

func (d *Dir) Put(ctx context.Context, name string, r io.Reader) (Backup, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." || strings.HasPrefix(name, tempPrefix) {
		return Backup{}, fmt.Errorf("backup name %q is not a plain file name", name)
	}
	if err := os.MkdirAll(d.root, 0o700); err != nil {
		return Backup{}, fmt.Errorf("create %s: %w", d.root, unwrapPathErr(err))
	}
	final := filepath.Join(d.root, name)
	if _, err := os.Lstat(final); err == nil {
		return Backup{}, fmt.Errorf("%s %w; backups are never overwritten", final, ErrExists)
	}
	d.removeStale()
	tmp, err := os.CreateTemp(d.root, tempPrefix+name+".*")
	if err != nil {
		return Backup{}, fmt.Errorf("create in %s: %w", d.root, unwrapPathErr(err))
	}
	// Locked while it is written: the lock dies with this process, however it dies, so
	// the next Put knows a temporary file nobody holds is a killed write's (removeStale).
	if err := syscall.Flock(int(tmp.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return Backup{}, fmt.Errorf("lock %s: %w", tmp.Name(), err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return Backup{}, err
	}
	if _, err := io.Copy(tmp, readerWithContext{ctx, r}); err != nil {
		return Backup{}, err
	}
	if err := tmp.Sync(); err != nil {
		return Backup{}, fmt.Errorf("write %s: %w", final, err)
	}
	if err := tmp.Close(); err != nil {
		return Backup{}, fmt.Errorf("write %s: %w", final, err)
	}
	// A hard link, unlike a rename, fails when final appeared meanwhile: a backup is
	// never overwritten, even by a concurrent Put of the same name.
	if err := os.Link(tmp.Name(), final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return Backup{}, fmt.Errorf("%s %w; backups are never overwritten", final, ErrExists)
		}
		return Backup{}, fmt.Errorf("write %s: %w", final, unwrapPathErr(err))
	}
	os.Remove(tmp.Name())
	done = true
	if dir, err := os.Open(d.root); err == nil {
		dir.Sync()
		dir.Close()
	}
	return d.Stat(ctx, name)
}

type readerWithContext struct {
	ctx context.Context
	r   io.Reader
}

func (r readerWithContext) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// unwrapPathErr drops the path from a *PathError: callers already name the path.
func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
