package recovery

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/klauspost/compress/gzip"

	"drconsole/storage"
)

// BackupOptions are what drconsole backup needs.
type BackupOptions struct {
	Conn       *Conn              // the server; Conn.Database is the database to dump
	Tools      *Tools             // nil: FindTools
	Recipients openpgp.EntityList // public keys to encrypt to; empty: not encrypted
	// Signer, when set, signs the backup in the same OpenPGP message that encrypts it, as
	// `gpg --sign --encrypt` does (ReadSigningKeyFile). Needs Recipients.
	Signer *openpgp.Entity
	Kind   storage.Kind // full (default) or incremental: only the name differs
	Prefix string       // the application's prefix in the name; "" = the database's name
	Now    func() time.Time
}

// ReadRecipientFile reads public keys (armored or binary) to encrypt backups to.
func ReadRecipientFile(path string) (openpgp.EntityList, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read recipient key %s: %w", path, unwrapPath(err))
	}
	defer f.Close()
	br := bufio.NewReader(f)
	head, _ := br.Peek(40)
	var list openpgp.EntityList
	if strings.Contains(string(head), "-----BEGIN PGP") {
		list, err = openpgp.ReadArmoredKeyRing(br)
	} else {
		list, err = openpgp.ReadKeyRing(br)
	}
	if err != nil || len(list) == 0 {
		return nil, fmt.Errorf("recipient key %s is not an OpenPGP public key: %v", path, err)
	}
	return list, nil
}

// BackupName is the backup job's name for a backup of the application with that prefix
// taken at t.
func BackupName(prefix string, kind storage.Kind, t time.Time, encrypted bool) string {
	if kind == "" || kind == storage.KindUnknown {
		kind = storage.KindFull
	}
	name := fmt.Sprintf("%s_%s_%s.dump.gz", prefix, kind, t.UTC().Format("20060102_150405"))
	if encrypted {
		name += ".gpg"
	}
	return name
}

// CreateBackup makes a backup in exactly the backup job's format (pg_dump -Fc -b, gzip,
// then OpenPGP to the recipients, binary) and stores it in loc atomically: a failure
// anywhere leaves nothing behind.
func CreateBackup(ctx context.Context, opts BackupOptions, loc storage.Location, rep Reporter) (storage.Backup, error) {
	rep = orDiscard(rep)
	b, err := createBackup(ctx, opts, loc, rep)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w: backup stopped; nothing was stored", ErrCancelled)
	}
	rep.Report(Event{Time: time.Now(), Stage: StageDone, Final: true, Err: err, Read: b.Size})
	return b, err
}

func createBackup(ctx context.Context, opts BackupOptions, loc storage.Location, rep Reporter) (storage.Backup, error) {
	if opts.Conn == nil || opts.Conn.Database == "" {
		return storage.Backup{}, fmt.Errorf("%w: name the database to back up (DB_NAME, --db-url or PGDATABASE)", ErrPreflight)
	}
	tools := opts.Tools
	if tools == nil {
		var err error
		if tools, err = FindTools(ctx, ""); err != nil {
			return storage.Backup{}, err
		}
	}
	if tools.Dump == "" {
		return storage.Backup{}, fmt.Errorf("%w: pg_dump not found beside %s", ErrPreflight, tools.Restore)
	}
	if err := checkSigner(opts); err != nil {
		return storage.Backup{}, err
	}
	// Fail on an unreachable server before creating anything.
	conn, err := opts.Conn.Connect(ctx, opts.Conn.Database)
	if err != nil {
		return storage.Backup{}, err
	}
	conn.Close(context.Background())

	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = opts.Conn.Database
	}
	if storage.ParseName(BackupName(prefix, opts.Kind, now(), false)).Prefix != prefix {
		return storage.Backup{}, fmt.Errorf("%w: %q cannot start a backup's name (letters, digits, '.', '-' and '_'; set backup_prefix)", ErrPreflight, prefix)
	}
	name := BackupName(prefix, opts.Kind, now(), len(opts.Recipients) > 0)
	cmd := exec.Command(tools.Dump, "-Fc", "-b", "--no-password", "--dbname", libpqDatabase(opts.Conn.Database))
	cmd.Env = opts.Conn.toolEnv(opts.Conn.Database)
	cmd.SysProcAttr = childAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return storage.Backup{}, err
	}
	var stderr strings.Builder
	cmd.Stderr = &limitedWriter{w: &stderr, n: 8 << 10}
	if err := cmd.Start(); err != nil {
		return storage.Backup{}, fmt.Errorf("%w: starting pg_dump: %v", ErrPreflight, err)
	}
	exited := make(chan struct{}) // closed once encode has reaped pg_dump
	stopKill := context.AfterFunc(ctx, func() { killGroup(cmd, exited) })
	defer stopKill()
	rep.Report(Event{Time: time.Now(), Stage: StageDump, Message: fmt.Sprintf("pg_dump of %s on %s into %s/%s", opts.Conn.Database, opts.Conn.Server(), loc.String(), name)})

	pr, pw := io.Pipe()
	dumped := NewMeter(stdout)
	go func() {
		err := encodeSigned(pw, dumped, opts.Recipients, opts.Signer, cmd, &stderr)
		close(exited)
		pw.CloseWithError(err)
	}()
	stop := sampleProgress(ctx, rep, StageDump, 0, dumped, nil, nil)
	b, err := loc.Put(ctx, name, pr)
	stop()
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		killGroup(cmd, exited)
		return storage.Backup{}, fmt.Errorf("backup of %s: %w", opts.Conn.Database, err)
	}
	rep.Report(Event{Time: time.Now(), Stage: StageDump, Message: fmt.Sprintf("stored %s (%s) in %s", b.Name, formatBytes(b.Size), loc.Name())})
	return b, nil
}

// checkSigner refuses, before pg_dump starts, a signer that could not sign: we only sign
// what we encrypt, and the key must be unlocked and able to sign now.
func checkSigner(opts BackupOptions) error {
	if opts.Signer == nil {
		return nil
	}
	if len(opts.Recipients) == 0 {
		return fmt.Errorf("%w: a signing key was given without a recipient key; drconsole signs only backups it encrypts", ErrPreflight)
	}
	key, ok := opts.Signer.SigningKey(time.Now())
	switch {
	case !ok:
		return fmt.Errorf("%w: the signing key has no key that can sign now (expired or revoked?)", ErrPreflight)
	case key.PrivateKey == nil || key.PrivateKey.Dummy():
		return fmt.Errorf("%w: the signing key holds no secret signing key", ErrPreflight)
	case key.PrivateKey.Encrypted:
		return fmt.Errorf("%w: the signing key is still locked by its passphrase", ErrPreflight)
	}
	return nil
}

// encode is encodeSigned without a signature.
func encode(w io.Writer, dump io.Reader, recipients openpgp.EntityList, cmd *exec.Cmd, stderr *strings.Builder) error {
	return encodeSigned(w, dump, recipients, nil, cmd, stderr)
}

// encodeSigned writes gzip(pg_dump output), encrypted when there are recipients and
// signed by signer when it is set, to w, and returns pg_dump's failure if it had one: the
// store then discards the partial backup.
func encodeSigned(w io.Writer, dump io.Reader, recipients openpgp.EntityList, signer *openpgp.Entity, cmd *exec.Cmd, stderr *strings.Builder) error {
	var plain io.WriteCloser = nopCloser{w}
	if signer != nil && len(recipients) == 0 {
		return errors.New("a backup is signed only when it is encrypted")
	}
	if len(recipients) > 0 {
		cfg := &packet.Config{DefaultCipher: packet.CipherAES256, DefaultCompressionAlgo: packet.CompressionNone}
		enc, err := openpgp.Encrypt(w, recipients, signer, &openpgp.FileHints{IsBinary: true}, cfg)
		if err != nil {
			return fmt.Errorf("encrypting to the recipient key: %v", err)
		}
		plain = enc
	}
	zw := gzip.NewWriter(plain)
	buf := make([]byte, feedSize)
	_, copyErr := io.CopyBuffer(zw, dump, buf)
	waitErr := cmd.Wait()
	if waitErr != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndex(msg, "\n"); i >= 0 {
			msg = msg[i+1:]
		}
		if msg == "" {
			msg = waitErr.Error()
		}
		return fmt.Errorf("%w: pg_dump: %s", ErrDatabase, msg)
	}
	if copyErr != nil {
		return copyErr
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return plain.Close()
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// limitedWriter keeps the first n bytes (a child's error output) and drops the rest.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
