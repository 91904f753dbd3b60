package recovery

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync/atomic"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/readahead"

	"drconsole/storage"
)

// The pipeline is a chain of io.Readers, one stage each:
//
//	location → Meter (bytes read) → Decrypt → Decompress → Meter (bytes of dump) → sink
//
// Unwrap builds the chain from what the bytes are (storage.Sniff), not from the name.
// Each stage runs ahead of the next in its own goroutine (readahead), so decryption and
// decompression use separate cores while pg_restore loads rows.

const (
	stageBuffer  = 256 << 10 // bytes per read-ahead buffer between stages
	stageBuffers = 4         // read-ahead buffers per stage
	maxLayers    = 4         // e.g. openpgp → gzip → dump; more is not a backup
)

// Meter counts the bytes that pass through it; safe to read from another goroutine.
type Meter struct {
	r io.Reader
	n atomic.Int64
}

// NewMeter wraps r.
func NewMeter(r io.Reader) *Meter { return &Meter{r: r} }

func (m *Meter) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	m.n.Add(int64(n))
	return n, err
}

// Count is the number of bytes read so far.
func (m *Meter) Count() int64 { return m.n.Load() }

// Stream is a backup with its wrappings peeled off: Reader yields the dump itself.
type Stream struct {
	Layers []storage.Layer // what was peeled, outermost first, ending with the dump's own kind
	Format storage.Format  // custom or plain
	Reader *bufio.Reader   // the dump
	// Signature is who signed the OpenPGP layer, known when Unwrap returns. A trusted
	// signature that does not verify fails Reader's last read with ErrBadSignature.
	Signature Signature
	closers   []io.Closer
}

// Close stops the read-ahead goroutines.
func (s *Stream) Close() error {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i].Close()
	}
	s.closers = nil
	return nil
}

// Encrypted reports whether an OpenPGP layer was peeled.
func (s *Stream) Encrypted() bool {
	for _, l := range s.Layers {
		if l == storage.LayerOpenPGP {
			return true
		}
	}
	return false
}

// Unwrap peels encryption and compression off r until it reaches a dump (pg_dump custom
// format or SQL text). It fails early and in one line for a wrong key, an empty file or
// something that is not a backup.
func Unwrap(r io.Reader, keys *Keys) (*Stream, error) {
	s := &Stream{}
	br := bufio.NewReaderSize(r, stageBuffer)
	symmetricBelow := false // the layer just peeled was decrypted with a passphrase alone
	for depth := 0; ; depth++ {
		head, err := br.Peek(storage.SniffLen)
		if err != nil && !isEOF(err) {
			s.Close()
			if symmetricBelow && !isStorageErr(err) && !errors.Is(err, ErrTruncated) {
				return nil, fmt.Errorf("%w: the passphrase does not decrypt the backup (or its very start is damaged)", ErrWrongKey)
			}
			return nil, readErr(err)
		}
		layer := storage.Sniff(head)
		s.Layers = append(s.Layers, layer)
		if depth >= maxLayers && layer != storage.LayerCustom && layer != storage.LayerSQL {
			s.Close()
			return nil, fmt.Errorf("%w: more than %d layers of encryption and compression", ErrNotBackup, maxLayers)
		}
		var next io.Reader
		switch layer {
		case storage.LayerCustom:
			s.Format, s.Reader = storage.FormatCustom, br
			return s, nil
		case storage.LayerSQL:
			s.Format, s.Reader = storage.FormatPlain, br
			return s, nil
		case storage.LayerEmpty, storage.LayerUnknown:
			s.Close()
			return nil, notADump(layer, s.Layers[:depth], symmetricBelow)
		case storage.LayerOpenPGP:
			if keys == nil {
				keys = &Keys{}
			}
			next, err = Decrypt(br, keys)
		case storage.LayerGzip, storage.LayerZstd:
			next, err = Decompress(br, layer)
		}
		if err != nil {
			s.Close()
			return nil, err
		}
		em, ok := next.(*errMapper)
		symmetricBelow = ok && em.symmetric
		if ok && em.sig != nil && em.sig.sig.better(s.Signature) {
			s.Signature = em.sig.sig
		}
		if c, ok := next.(io.Closer); ok {
			s.closers = append(s.closers, c)
		}
		ra, err := readahead.NewReaderSize(next, stageBuffers, stageBuffer)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.closers = append(s.closers, ra)
		br = bufio.NewReaderSize(ra, stageBuffer)
	}
}

// notADump says why a stream that should hold a dump does not, after the layers outer.
func notADump(layer storage.Layer, outer []storage.Layer, symmetric bool) error {
	empty := layer == storage.LayerEmpty
	switch {
	case symmetric && empty:
		return fmt.Errorf("%w: the passphrase decrypts the backup to nothing", ErrWrongKey)
	case symmetric:
		return fmt.Errorf("%w: the passphrase decrypts the backup to something that is not a backup", ErrWrongKey)
	case len(outer) == 0 && empty:
		return fmt.Errorf("%w: the file is empty", ErrNotBackup)
	case len(outer) == 0:
		return fmt.Errorf("%w: content is neither OpenPGP, gzip, zstd, a pg_dump archive nor SQL", ErrNotBackup)
	case empty:
		return fmt.Errorf("%w: nothing inside the %s layer", ErrCorrupt, outer[len(outer)-1])
	}
	return fmt.Errorf("%w: what the %s layer holds is neither a pg_dump archive nor SQL", ErrNotBackup, outer[len(outer)-1])
}

// Decrypt is the OpenPGP stage: public-key (gpg --encrypt) or symmetric (gpg --symmetric),
// binary or armored, signed (gpg --sign --encrypt) or not. A wrong key fails here, before
// any plaintext; integrity (MDC/AEAD) failures and a signature by a key we hold that does
// not verify surface as read errors at the end of the stream, in place of io.EOF.
func Decrypt(r io.Reader, keys *Keys) (io.Reader, error) {
	br := bufio.NewReader(r)
	if head, _ := br.Peek(27); string(head) == "-----BEGIN PGP MESSAGE-----" {
		block, err := armor.Decode(br)
		if err != nil {
			return nil, fmt.Errorf("%w: armored message: %v", ErrCorrupt, err)
		}
		r = bufio.NewReaderSize(block.Body, recipientsHead)
	} else {
		r = br
	}
	recipients := recipientsOf(r.(*bufio.Reader))
	frame := newFraming(r)
	mapErr := func(err error) error {
		if err != nil && err != io.EOF && frame.srcErr != nil {
			return frame.srcErr
		}
		if err != nil && !errors.Is(err, ErrWrongKey) && !errors.Is(err, ErrNoKey) && !isStorageErr(err) &&
			!errors.Is(err, pgperrors.ErrMDCHashMismatch) && frame.truncated() {
			return fmt.Errorf("%w: encrypted data ends in the middle of a packet", ErrTruncated)
		}
		if errors.Is(err, pgperrors.ErrKeyIncorrect) {
			return notOurKey(recipients, keys)
		}
		return decryptErr(err)
	}
	prompt, symmetric := keys.prompt(), false
	md, err := openpgp.ReadMessage(frame, keys.keyring(), func(locked []openpgp.Key, sym bool) ([]byte, error) {
		symmetric = symmetric || sym
		return prompt(locked, sym)
	}, nil)
	if err != nil && symmetric && !frame.truncated() && frame.srcErr == nil &&
		!errors.Is(err, ErrWrongKey) && !errors.Is(err, ErrNoKey) && !errors.Is(err, ErrCancelled) {
		// A wrong passphrase gives a wrong session key, and go-crypto reports the
		// garbage it decrypts to as a parsing error before any plaintext.
		return nil, fmt.Errorf("%w: the passphrase does not decrypt the backup", ErrWrongKey)
	}
	if err != nil {
		return nil, mapErr(err)
	}
	// go-crypto takes a message cut just before its last, empty, partial-length chunk
	// (a single 0 byte, when the data ends on a chunk's boundary) as whole: its data and
	// MDC are all there, but the file is not what was written. The framing knows.
	cut := func() error {
		if frame.truncated() {
			return fmt.Errorf("%w: encrypted data ends in the middle of a packet", ErrTruncated)
		}
		return nil
	}
	return &errMapper{r: md.UnverifiedBody, mapErr: mapErr, atEOF: cut, sig: newSignatureCheck(md, keys.Signers), symmetric: symmetric}, nil
}

// recipientsHead is how much of an OpenPGP message is looked at for its recipients.
const recipientsHead = 16 << 10

// recipientsOf reads the key IDs an encrypted message is addressed to from its first
// packets (without consuming them): what to tell an operator whose key does not open it.
func recipientsOf(br *bufio.Reader) []uint64 {
	head, _ := br.Peek(recipientsHead)
	rd := bytes.NewReader(head)
	var ids []uint64
	for {
		p, err := packet.Read(rd)
		if err != nil {
			return ids
		}
		ek, ok := p.(*packet.EncryptedKey)
		if !ok {
			return ids
		}
		ids = append(ids, ek.KeyId)
	}
}

// notOurKey says which key a backup needs when the keys given do not open it.
func notOurKey(recipients []uint64, keys *Keys) error {
	var want []string
	for _, id := range recipients {
		if id == 0 {
			want = append(want, "a hidden key (gpg --throw-keyids)")
		} else {
			want = append(want, fmt.Sprintf("%016X", id))
		}
	}
	to := "a key that was not given"
	if len(want) > 0 {
		to = "key " + strings.Join(want, " or ")
	}
	if keys == nil || len(keys.Entities) == 0 {
		return &keyError{fmt.Sprintf("the backup is encrypted to %s, and no secret key was given: use --gpg-key FILE (gpg --export-secret-keys KEY > FILE)", to), ErrNoKey}
	}
	var have []string
	for _, e := range keys.Entities {
		have = append(have, fmt.Sprintf("%016X", e.PrimaryKey.KeyId))
		for _, sub := range e.Subkeys {
			have = append(have, fmt.Sprintf("%016X", sub.PublicKey.KeyId))
		}
	}
	return &keyError{fmt.Sprintf("the backup is encrypted to %s; the --gpg-key file holds %s", to, strings.Join(have, ", ")), ErrNotRecipient}
}

// Decompress is the gzip or zstd stage. Corruption and truncation surface as read errors
// (a gzip CRC or size mismatch at the end of the stream included).
func Decompress(r io.Reader, layer storage.Layer) (io.Reader, error) {
	switch layer {
	case storage.LayerGzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, gzipErr(err)
		}
		return &errMapper{r: zr, mapErr: gzipErr}, nil
	case storage.LayerZstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, zstdErr(err)
		}
		return &zstdReader{errMapper{r: zr, mapErr: zstdErr}, zr}, nil
	}
	return r, nil
}

type zstdReader struct {
	errMapper
	d *zstd.Decoder
}

func (z *zstdReader) Close() error { z.d.Close(); return nil }

// errMapper turns a stage's library errors into ours; for OpenPGP it also checks the
// signature go-crypto verified at EOF.
type errMapper struct {
	r      io.Reader
	mapErr func(error) error
	atEOF  func() error // a last check of the stream at its end, before the signature's
	// sig, for OpenPGP: go-crypto checks a signature only once the body has been read to
	// its EOF, so that EOF is held back until the signature is known good.
	sig *signatureCheck
	err error // a failure at EOF, given again to every later read
	// symmetric: decrypted with a passphrase alone. Such a message has no check that
	// tells a wrong passphrase from garbage (go-crypto dropped the quick check, an
	// oracle), so what it decrypts to must be judged: nonsense means a wrong passphrase.
	symmetric bool
}

func (e *errMapper) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.r.Read(p)
	if err == io.EOF {
		if e.atEOF != nil {
			if e.err = e.atEOF(); e.err != nil {
				return n, e.err
			}
		}
		if e.sig != nil {
			if e.err = e.sig.atEOF(); e.err != nil {
				return n, e.err
			}
		}
		return n, io.EOF
	}
	if err != nil {
		return n, e.mapErr(err)
	}
	return n, nil
}

// known reports errors that already say what went wrong: ours, the location's, a cancel.
// Every stage passes them through untouched.
func known(err error) bool {
	return errors.Is(err, ErrTruncated) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrWrongKey) ||
		errors.Is(err, ErrNoKey) || errors.Is(err, ErrCancelled) || errors.Is(err, ErrBadSignature) || isStorageErr(err)
}

func gzipErr(err error) error {
	var ce flate.CorruptInputError
	switch {
	case err == nil || err == io.EOF || known(err):
		return err
	case isEOF(err):
		return fmt.Errorf("%w: gzip data ends early", ErrTruncated)
	case errors.Is(err, gzip.ErrChecksum):
		return fmt.Errorf("%w: gzip checksum (CRC) does not match", ErrCorrupt)
	case errors.Is(err, gzip.ErrHeader):
		return fmt.Errorf("%w: gzip header is invalid", ErrCorrupt)
	case errors.As(err, &ce):
		return fmt.Errorf("%w: gzip data is damaged (%v)", ErrCorrupt, err)
	}
	return fmt.Errorf("%w: gzip: %v", ErrCorrupt, err)
}

func zstdErr(err error) error {
	switch {
	case err == nil || err == io.EOF || known(err):
		return err
	case isEOF(err):
		return fmt.Errorf("%w: zstd data ends early", ErrTruncated)
	}
	return fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
}

func isStorageErr(err error) bool {
	return errors.Is(err, storage.ErrChanged) || errors.Is(err, storage.ErrUnreachable) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// readErr is a failure to read a layer that no stage explained.
func readErr(err error) error {
	if known(err) {
		return err
	}
	return fmt.Errorf("%w: reading the backup: %v", ErrCorrupt, err)
}

func isEOF(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
