package wal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/klauspost/compress/zstd"

	"drconsole/recovery"
	"drconsole/storage"
)

// Pushed is what a push did in one location.
type Pushed struct {
	Location string `json:"location"`
	Name     string `json:"name,omitempty"` // what it is stored as
	// Already: the location held the same content under that WAL file's name, from an
	// earlier push (PostgreSQL pushes again after a crash between archiving and noting it).
	Already bool   `json:"already,omitempty"`
	Error   string `json:"error,omitempty"`
	err     error
}

// Pusher archives WAL files into every location: archive_command.
type Pusher struct {
	Locations []storage.Folder
	// Recipients: encrypt to these keys; none, compressed only.
	Recipients openpgp.EntityList
	// Keys read a file another tool archived encrypted under the same name, to compare it.
	Keys *recovery.Keys
}

// ErrDiffers: the archive holds another file under that WAL file's name.
var ErrDiffers = errors.New("already archived with different content")

// Push stores the WAL file at file in every location. It fails unless every location
// holds it afterwards (PostgreSQL then keeps the file and tries again), and when one holds
// a different file under its name.
func (p *Pusher) Push(ctx context.Context, file string) ([]Pushed, error) {
	name := filepath.Base(file)
	if _, err := Kind(name); err != nil {
		return nil, err
	}
	if len(p.Locations) == 0 {
		return nil, errors.New("no backup location is configured to archive WAL into")
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	// Three things at once, none waiting for another: the SHA-256 that names the file, the
	// compressed and encrypted copy (in memory: a 16 MiB segment compresses to a few MiB,
	// stored as the same bytes everywhere), and each location's look for the name (a LIST:
	// the network's time, not the processors'). Each reads the file through its own
	// section, from the page cache. (Compressing in parts on both processors as well cost
	// more processor time and memory than it saved on a busy two-core machine.)
	found := make([]chan findResult, len(p.Locations))
	for i, w := range p.Locations {
		found[i] = make(chan findResult, 1)
		go func() {
			objs, err := w.Find(ctx, name)
			found[i] <- findResult{objs, err}
		}()
	}
	hashed := make(chan error, 1)
	h := sha256.New()
	go func() {
		_, err := io.Copy(h, io.NewSectionReader(f, 0, info.Size()))
		hashed <- err
	}()
	var enc bytes.Buffer
	encErr := encode(&enc, io.NewSectionReader(f, 0, info.Size()), p.Recipients, walWindow)
	if err := <-hashed; err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if encErr != nil {
		return nil, fmt.Errorf("compress %s: %w", file, encErr)
	}
	sum := h.Sum(nil)
	as := storedName(name, sum, len(p.Recipients) > 0)
	var out []Pushed
	var failed []string
	var first error
	for i, w := range p.Locations {
		r := p.pushOne(ctx, w, <-found[i], name, as, sum, enc.Bytes())
		out = append(out, r)
		if r.err != nil {
			failed = append(failed, r.Location+": "+oneLine(r.err))
			if first == nil || errors.Is(r.err, ErrDiffers) {
				first = r.err
			}
		}
	}
	if first != nil {
		return out, fmt.Errorf("%s not archived in every location (%s): %w", name, strings.Join(failed, "; "), first)
	}
	return out, nil
}

// findResult is what a location's Find of a WAL file's name returned.
type findResult struct {
	objs []storage.Backup
	err  error
}

func (p *Pusher) pushOne(ctx context.Context, w storage.Folder, found findResult, name, as string, sum, enc []byte) Pushed {
	r := Pushed{Location: w.Name(), Name: as}
	fail := func(err error) Pushed {
		r.err, r.Error = err, oneLine(err)
		return r
	}
	same, err := p.archived(ctx, w, found, name, sum)
	switch {
	case err != nil:
		return fail(err)
	case same != "":
		r.Name, r.Already = same, true
		return r
	}
	_, err = w.Put(ctx, as, bytes.NewReader(enc))
	if errors.Is(err, storage.ErrExists) {
		// A concurrent push of the same file: the name says the content is the same.
		r.Already = true
		return r
	}
	if err != nil {
		return fail(err)
	}
	return r
}

// archived says what w holds under name, from what its Find found: the stored name
// holding the same content, "" when none is there, ErrDiffers when another file is.
func (p *Pusher) archived(ctx context.Context, w storage.Folder, found findResult, name string, sum []byte) (string, error) {
	objs, err := found.objs, found.err
	if err != nil {
		return "", err
	}
	want := hex.EncodeToString(sum)[:sumLen]
	var theirs []storage.Backup
	var differs string
	for _, o := range objs {
		st, ok := parseStored(path.Base(o.Key), name)
		switch {
		case !ok:
		case st.sum == want:
			return path.Base(o.Key), nil
		case st.sum != "":
			differs = path.Base(o.Key)
		default:
			theirs = append(theirs, o)
		}
	}
	if differs != "" {
		return "", fmt.Errorf("%w: %s holds %s", ErrDiffers, w, differs)
	}
	for _, o := range theirs {
		got, err := readAll(ctx, w, o, p.Keys)
		if err != nil {
			return "", fmt.Errorf("%w: %s holds %s, which cannot be compared: %v", ErrDiffers, w, path.Base(o.Key), err)
		}
		if s := sha256.Sum256(got.data); hex.EncodeToString(s[:])[:sumLen] != want {
			return "", fmt.Errorf("%w: %s holds %s", ErrDiffers, w, path.Base(o.Key))
		}
		return path.Base(o.Key), nil
	}
	return "", nil
}

// encode compresses r into w (zstd, with its checksum) and encrypts it to recipients.
// Options for the zstd encoder come after the level, the default's.
func encode(w io.Writer, r io.Reader, recipients openpgp.EntityList, opts ...zstd.EOption) error {
	out, done, err := encrypter(w, recipients)
	if err != nil {
		return err
	}
	opts = append([]zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1)}, opts...)
	zw, err := zstd.NewWriter(out, opts...)
	if err != nil {
		return err
	}
	if _, err := io.Copy(zw, r); err != nil {
		zw.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return done()
}

// walWindow is the zstd window for WAL files: zstd's level 3 as the zstd command has it
// is the default level's match finder (double fast) with a 2 MiB window. On real WAL
// (bench/walpush) it compresses within 0.3 % of the default's 8 MiB window, with a quarter of the history buffer to
// allocate and slide, which a 16 MiB push feels. (Not WithLowerEncoderMem: its buffer of
// one window and one block slides the whole window after every block.)
var walWindow = zstd.WithWindowSize(2 << 20)

// encrypter is w encrypting to recipients (an OpenPGP message, not compressed again), and
// what ends the message; w itself when there are none.
func encrypter(w io.Writer, recipients openpgp.EntityList) (io.Writer, func() error, error) {
	if len(recipients) == 0 {
		return w, func() error { return nil }, nil
	}
	hints := &openpgp.FileHints{IsBinary: true}
	cfg := &packet.Config{DefaultCompressionAlgo: packet.CompressionNone}
	pgp, err := openpgp.Encrypt(w, recipients, nil, hints, cfg)
	if err != nil {
		return nil, nil, err
	}
	return pgp, pgp.Close, nil
}

// oneLine is err's message on one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
