package recovery

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/klauspost/compress/gzip"

	"drconsole/internal/gpgtest"
	"drconsole/storage"
)

// signedBackupJob makes a backup the way a backup job that signs does: pg_dump -Fc,
// gzip, gpg --sign --local-user SIGNER --encrypt --recipient (the fixture's key).
func (f *fixture) signedBackupJob(t *testing.T, signer *gpgtest.Key, stamp string) string {
	t.Helper()
	raw := filepath.Join(f.dir, "raw.dump")
	run(t, f.c.Env(f.db), filepath.Join(f.c.BinDir, "pg_dump"), "-Fc", "-b", "-f", raw, f.db)
	run(t, nil, "gzip", raw)
	name := "spywatcher_full_" + stamp + ".dump.gz.gpg"
	signer.SignEncrypt(t, f.key_(t), raw+".gz", f.path(name))
	os.Remove(raw + ".gz")
	return name
}

func signers(t *testing.T, file string) openpgp.EntityList {
	t.Helper()
	list, err := ReadSignerFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func TestSignatureOfBackupsMadeByGPG(t *testing.T) {
	f := newFixture(t)
	ops := gpgtest.NewKey(t, "Ops Signer", "")
	other := gpgtest.NewKey(t, "Someone Else", "")
	signed := f.signedBackupJob(t, ops, "20240125_120000")
	unsigned := f.backupJob(t, "20240125_130000")
	ctx := context.Background()
	withSigners := func(list openpgp.EntityList) *Keys {
		k := f.keys(t)
		k.Signers = list
		return k
	}
	opsID := ops.LongKeyID()
	cases := []struct {
		name string
		file string
		keys *Keys
		want Signature
		says string
	}{
		{"signed by a trusted signer", signed, withSigners(signers(t, ops.PublicFile)),
			Signature{Signed: true, KeyIDHex: opsID, Signer: "Ops Signer <ops.signer@drconsole.test>", Trusted: true},
			"signed by " + opsID + " (Ops Signer <ops.signer@drconsole.test>)"},
		{"signed by a key that is not a signer", signed, withSigners(signers(t, other.PublicFile)),
			Signature{Signed: true, KeyIDHex: opsID}, "signed by an unknown key " + opsID},
		{"signed, no signers configured", signed, f.keys(t),
			Signature{Signed: true, KeyIDHex: opsID}, "signed by an unknown key " + opsID},
		{"gpg --encrypt only", unsigned, withSigners(signers(t, ops.PublicFile)), Signature{}, "not signed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want.Signed {
				tc.want.KeyID, _ = strconv.ParseUint(opsID, 16, 64)
			}
			c, err := Inspect(ctx, f.source(t, tc.file), tc.keys)
			if err != nil {
				t.Fatal(err)
			}
			if c.Signature != tc.want || c.Signature.String() != tc.says {
				t.Errorf("inspect: %+v %q, want %+v %q", c.Signature, c.Signature, tc.want, tc.says)
			}
			if err := c.Signature.Require(); tc.want.Trusted != (err == nil) || err != nil && !errors.Is(err, ErrUnsigned) {
				t.Errorf("require: %v", err)
			}
			c, err = Verify(ctx, f.source(t, tc.file), tc.keys, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !c.Complete || c.Signature != tc.want {
				t.Errorf("verify: complete %v, %+v, want %+v", c.Complete, c.Signature, tc.want)
			}
		})
	}

	// The restore path reads the signed backup to its end, signature checked, and restores it.
	r := f.restoreInto(t, signed, Options{Keys: withSigners(signers(t, ops.PublicFile))})
	if r.Read != f.source(t, signed).Backup.Size {
		t.Errorf("restore read %d of %d bytes", r.Read, f.source(t, signed).Backup.Size)
	}
}

// sealed builds, packet by packet, what `gpg --sign --encrypt` writes: a session key for
// the recipient, then integrity-protected (MDC) data holding a one-pass signature packet,
// the literal data body, and signature. The signature is by signer over signed (not
// necessarily body), changed by damage: a message whose encryption is intact and whose
// signature is not.
func sealed(t *testing.T, recipient, signer *openpgp.Entity, body, signed []byte, damage func([]byte) []byte) []byte {
	t.Helper()
	return sealedAt(t, time.Now(), recipient, signer, body, signed, damage)
}

// sealedAt is sealed with the signature made at a given time.
func sealedAt(t *testing.T, made time.Time, recipient, signer *openpgp.Entity, body, signed []byte, damage func([]byte) []byte) []byte {
	t.Helper()
	cfg := &packet.Config{Time: func() time.Time { return made }}
	var sig bytes.Buffer
	if err := openpgp.DetachSign(&sig, signer, bytes.NewReader(signed), cfg); err != nil {
		t.Fatal(err)
	}
	p, err := packet.Read(bytes.NewReader(sig.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	sigPacket := p.(*packet.Signature)
	signKey, ok := signer.SigningKey(made)
	encKey, ok2 := recipient.EncryptionKey(time.Now())
	if !ok || !ok2 {
		t.Fatal("no signing or encryption key")
	}
	sessionKey := make([]byte, packet.CipherAES256.KeySize())
	if _, err := rand.Read(sessionKey); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := packet.SerializeEncryptedKeyAEAD(&out, encKey.PublicKey, packet.CipherAES256, false, sessionKey, cfg); err != nil {
		t.Fatal(err)
	}
	payload, err := packet.SerializeSymmetricallyEncrypted(&out, packet.CipherAES256, false, packet.CipherSuite{}, sessionKey, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ops := &packet.OnePassSignature{Version: 3, SigType: packet.SigTypeBinary, Hash: sigPacket.Hash,
		PubKeyAlgo: signKey.PublicKey.PubKeyAlgo, KeyId: signKey.PublicKey.KeyId, IsLast: true}
	if err := ops.Serialize(payload); err != nil {
		t.Fatal(err)
	}
	lit, err := packet.SerializeLiteral(nopCloser{payload}, true, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lit.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := lit.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := payload.Write(damage(sig.Bytes())); err != nil {
		t.Fatal(err)
	}
	if err := payload.Close(); err != nil { // writes the MDC over all of the above
		t.Fatal(err)
	}
	return out.Bytes()
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readEntity(t *testing.T, file string) *openpgp.Entity {
	t.Helper()
	e, err := ReadSigningKeyFile(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// A trusted signature that does not verify must fail the stream at its end, in place of
// io.EOF, whatever lies between the OpenPGP layer and the reader (gzip, read-ahead).
func TestBadSignatureFailsTheStreamAtEOF(t *testing.T) {
	ops := gpgtest.NewKey(t, "Ops Signer", "")
	restorer := gpgtest.NewKey(t, "Restore Host", "")
	secret, err := ReadKeyFile(restorer.SecretFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, recipient := readEntity(t, ops.SecretFile), signers(t, restorer.PublicFile)[0]
	trusted := &Keys{Entities: secret, Signers: signers(t, ops.PublicFile)}

	sql := []byte("-- PostgreSQL database dump\n" + strings.Repeat("INSERT INTO \"User\" VALUES (1, 'USER');\n", 60000))
	tampered := bytes.Replace(sql, []byte("'USER'"), []byte("'ADMIN'"), 1) // what an attacker would change
	body := gzipped(t, sql)
	asIs := func(b []byte) []byte { return b }
	cases := []struct {
		name string
		msg  []byte
		keys *Keys
		want error // nil: the stream ends in io.EOF
	}{
		// The builder is right: the same message with a matching signature verifies.
		{"matching signature", sealed(t, recipient, signer, body, body, asIs), trusted, nil},
		{"signature over another plaintext", sealed(t, recipient, signer, body, gzipped(t, tampered), asIs), trusted, ErrBadSignature},
		{"signature packet damaged", sealed(t, recipient, signer, body, body, func(b []byte) []byte {
			b = bytes.Clone(b)
			b[len(b)-2] ^= 0x01 // inside the signature value itself
			return b
		}), trusted, ErrBadSignature},
		{"signature packet missing", sealed(t, recipient, signer, body, body, func([]byte) []byte { return nil }), trusted, ErrBadSignature},
		// Not an error at this level: nobody trusts the key, the caller decides from Signature.
		{"bad signature by an unknown key", sealed(t, recipient, signer, body, gzipped(t, tampered), asIs), &Keys{Entities: secret}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, err := Unwrap(bytes.NewReader(tc.msg), tc.keys)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if !st.Signature.Signed || st.Signature.KeyIDHex != ops.LongKeyID() || st.Signature.Trusted != (len(tc.keys.Signers) > 0) {
				t.Errorf("signature known before the data: %+v", st.Signature)
			}
			var got []byte
			buf := make([]byte, 32<<10)
			for {
				n, err := st.Reader.Read(buf)
				got = append(got, buf[:n]...)
				if err == nil {
					continue
				}
				t.Logf("read to the end: %v", err)
				if tc.want == nil && err != io.EOF || tc.want != nil && !errors.Is(err, tc.want) {
					t.Fatalf("read to the end: %v, want %v", err, tc.want)
				}
				if err == io.EOF {
					break
				}
				// The failure stays: a second read never turns it into an EOF.
				if _, again := st.Reader.Read(buf); again == io.EOF || again == nil {
					t.Errorf("read after the failure: %v", again)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is more than one line: %q", err)
				}
				break
			}
			if tc.want == nil && !bytes.Equal(got, sql) {
				t.Errorf("read %d bytes, want %d", len(got), len(sql))
			}

			// Verify reports it the same way, naming the backup.
			dir := t.TempDir()
			name := "spywatcher_full_20240101_000000.sql.gz.gpg"
			if err := os.WriteFile(filepath.Join(dir, name), tc.msg, 0o600); err != nil {
				t.Fatal(err)
			}
			loc := storage.NewDir("local", dir)
			b, err := loc.Stat(context.Background(), name)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Verify(context.Background(), Source{Location: loc, Backup: b}, tc.keys, nil)
			t.Logf("verify: %v", err)
			switch {
			case tc.want == nil && (err != nil || !c.Complete || c.Signature != st.Signature):
				t.Errorf("verify: %v, %+v", err, c)
			case tc.want != nil && (!errors.Is(err, tc.want) || c != nil || !strings.Contains(err.Error(), name)):
				t.Errorf("verify: %v, %+v", err, c)
			}
		})
	}
}

// pg_restore may finish before the last bytes of the stream arrive (the archive's end
// is not the OpenPGP message's end). The restore still reads to the end, finds the bad
// signature, and drops the scratch database.
func TestRestoreRefusesABadSignature(t *testing.T) {
	f := newFixture(t)
	ops := gpgtest.NewKey(t, "Ops Signer", "")
	raw := f.pgDump(t, "raw.dump", "-Fc", "-b")
	dump, err := os.ReadFile(f.path(raw))
	if err != nil {
		t.Fatal(err)
	}
	body := gzipped(t, dump)
	other := gzipped(t, append(bytes.Clone(dump), 0))
	recipient := signers(t, f.key_(t).PublicFile)[0]
	signer := readEntity(t, ops.SecretFile)
	keys := f.keys(t)
	keys.Signers = signers(t, ops.PublicFile)

	good := f.write(t, "spywatcher_full_20240101_000000.dump.gz.gpg", sealed(t, recipient, signer, body, body, func(b []byte) []byte { return b }))
	f.restoreInto(t, good, Options{Keys: keys})

	bad := f.write(t, "spywatcher_full_20240102_000000.dump.gz.gpg", sealed(t, recipient, signer, body, other, func(b []byte) []byte { return b }))
	ctx := context.Background()
	plan, err := Prepare(ctx, f.source(t, bad), Options{Conn: f.conn(t), Keys: keys})
	if err != nil {
		t.Fatal(err) // the header is fine; the signature is known bad only at the end
	}
	if !plan.Contents.Signature.Trusted {
		t.Errorf("pre-flight signature: %+v", plan.Contents.Signature)
	}
	_, err = plan.Restore(ctx, nil)
	f.assertBad(t, err, ErrBadSignature)
}

// feed keeps reading after the child stops, so the error only the stream's end can give
// (MDC, gzip CRC, signature) is still found.
func TestFeedReadsToTheEndAfterTheChildStops(t *testing.T) {
	stream := io.MultiReader(bytes.NewReader(make([]byte, 3*feedSize)), errReader{ErrBadSignature})
	streamErr, writeErr := feed(&failingWriter{}, stream)
	if !errors.Is(streamErr, ErrBadSignature) || writeErr == nil {
		t.Errorf("feed: stream %v, write %v", streamErr, writeErr)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n++; w.n > 1 {
		return 0, errors.New("broken pipe")
	}
	return len(p), nil
}

func TestCreateBackupSigned(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ops := gpgtest.NewKey(t, "Ops Signer", "sign pw")
	restorer := f.key_(t)
	recipients, err := ReadRecipientFile(restorer.PublicFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ReadSigningKeyFile(ops.SecretFile, []byte("sign pw"))
	if err != nil {
		t.Fatal(err)
	}
	tools, err := FindTools(ctx, f.c.BinDir)
	if err != nil {
		t.Fatal(err)
	}
	loc := storage.NewDir("local", f.dir)
	opts := BackupOptions{Conn: f.conn(t), Tools: tools, Recipients: recipients, Signer: signer,
		Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }}
	b, err := CreateBackup(ctx, opts, loc, nil)
	if err != nil {
		t.Fatal(err)
	}

	// The operator's gpg, knowing the signer, calls the signature good.
	out := filepath.Join(t.TempDir(), "out.dump.gz")
	status, err := restorer.DecryptVerify(t, f.path(b.Name), out, ops)
	if err != nil || !strings.Contains(status, "[GNUPG:] GOODSIG "+ops.LongKeyID()+" ") || !strings.Contains(status, "[GNUPG:] VALIDSIG "+ops.Fingerprint+" ") {
		t.Fatalf("gpg --decrypt: %v\n%s", err, status)
	}
	run(t, nil, "gunzip", out)
	sql := filepath.Join(t.TempDir(), "out.sql")
	run(t, nil, filepath.Join(f.c.BinDir, "pg_restore"), "-f", sql, strings.TrimSuffix(out, ".gz"))
	if text, _ := os.ReadFile(sql); !bytes.Contains(text, []byte(`COPY public."User"`)) {
		t.Errorf("pg_restore of the decrypted backup has no User data")
	}

	// drconsole agrees.
	keys := f.keys(t)
	keys.Signers = signers(t, ops.PublicFile)
	c, err := Verify(ctx, Source{Location: loc, Backup: b}, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Complete || !c.Signature.Trusted || c.Signature.KeyIDHex != ops.LongKeyID() || c.Signature.Signer != "Ops Signer <ops.signer@drconsole.test>" {
		t.Errorf("verify: %+v", c.Signature)
	}

	// We sign only what we encrypt, and only with an unlocked key; nothing is stored otherwise.
	locked, err := ReadKeyFile(ops.SecretFile)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadDir(f.dir)
	for _, bad := range []BackupOptions{
		{Conn: f.conn(t), Tools: tools, Signer: signer},
		{Conn: f.conn(t), Tools: tools, Recipients: recipients, Signer: locked[0]},
	} {
		if _, err := CreateBackup(ctx, bad, loc, nil); !errors.Is(err, ErrPreflight) {
			t.Errorf("backup: %v, want refused", err)
		}
	}
	if after, _ := os.ReadDir(f.dir); len(after) != len(before) {
		t.Errorf("refused backups left files: %d, were %d", len(after), len(before))
	}
}

func TestReadSigningKeyFile(t *testing.T) {
	protected := gpgtest.NewKey(t, "Protected", "right pw")
	plain := gpgtest.NewKey(t, "Plain", "")
	for _, file := range []string{protected.SecretFile, protected.SecretFileBinary} {
		e, err := ReadSigningKeyFile(file, []byte("right pw"))
		if err != nil {
			t.Fatal(err)
		}
		if k, ok := e.SigningKey(time.Now()); !ok || k.PrivateKey.Encrypted {
			t.Errorf("%s: signing key not unlocked", file)
		}
	}
	for _, tc := range []struct {
		name string
		file string
		pass []byte
		want error
		says string
	}{
		{"wrong passphrase", protected.SecretFile, []byte("wrong"), ErrWrongKey, "wrong passphrase"},
		{"missing passphrase", protected.SecretFile, nil, ErrNoKey, "protected by a passphrase and none was given"},
		{"public key only", protected.PublicFile, []byte("right pw"), nil, "holds only public keys"},
		{"not a key", writeText(t, "hello\n"), nil, nil, "is not an OpenPGP key"},
		{"no such file", filepath.Join(t.TempDir(), "nope.asc"), nil, nil, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadSigningKeyFile(tc.file, tc.pass)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) || strings.Contains(err.Error(), "\n") {
				t.Errorf("err = %v, want %v saying %q", err, tc.want, tc.says)
			}
		})
	}

	// Several keys in one file: the first secret key that can sign.
	both := writeText(t, string(readAll(t, plain.PublicFile))+string(readAll(t, plain.SecretFile))+string(readAll(t, protected.SecretFile)))
	e, err := ReadSigningKeyFile(both, nil)
	if err != nil || e.PrimaryIdentity().Name != "Plain <plain@drconsole.test>" || e.PrivateKey == nil {
		t.Errorf("several keys: %v", err)
	}
}

func TestReadSignerFile(t *testing.T) {
	k := gpgtest.NewKey(t, "Signer", "pw")
	armored := signers(t, k.PublicFile)
	var bin bytes.Buffer
	if err := armored[0].Serialize(&bin); err != nil {
		t.Fatal(err)
	}
	binary := writeText(t, bin.String())
	for _, file := range []string{k.PublicFile, binary, k.SecretFile, k.SecretFileBinary} {
		list, err := ReadSignerFile(file)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(list) != 1 || list[0].PrimaryKey.KeyId != armored[0].PrimaryKey.KeyId {
			t.Errorf("%s: %d keys", file, len(list))
		}
		// Only the public part is kept: a signer never decrypts and is never asked for a passphrase.
		for _, key := range list.KeysById(list[0].Subkeys[0].PublicKey.KeyId) {
			if key.PrivateKey != nil {
				t.Errorf("%s: secret part kept", file)
			}
		}
		if list[0].PrivateKey != nil {
			t.Errorf("%s: secret primary key kept", file)
		}
	}
	plain := writeText(t, "PGDMP not a key")
	enc := plain + ".gpg"
	k.Encrypt(t, plain, enc)
	for _, file := range []string{plain, enc, filepath.Join(t.TempDir(), "missing.asc")} {
		_, err := ReadSignerFile(file)
		if err == nil || !strings.Contains(err.Error(), "signer key "+file) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v", file, err)
		}
	}
}

func writeText(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A signing key expires; the backups it signed while valid stay restorable, as gpg calls
// them good signatures by an expired key. A revoked key's signatures do not verify.
func TestSignatureByAKeyThatExpiredSince(t *testing.T) {
	restorer := gpgtest.NewKey(t, "Restore Host", "")
	secret, err := ReadKeyFile(restorer.SecretFile)
	if err != nil {
		t.Fatal(err)
	}
	recipient := signers(t, restorer.PublicFile)[0]
	born := time.Now().Add(-48 * time.Hour)
	signer, err := openpgp.NewEntity("Old Ops", "", "old.ops@drconsole.test", &packet.Config{
		Algorithm: packet.PubKeyAlgoEdDSA, KeyLifetimeSecs: 24 * 3600, Time: func() time.Time { return born }})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := signer.SigningKey(time.Now()); ok {
		t.Fatal("the key has not expired")
	}
	body := gzipped(t, []byte("-- PostgreSQL database dump\nSELECT 1;\n"))
	keys := &Keys{Entities: secret, Signers: openpgp.EntityList{signer}}
	read := func(msg []byte) error {
		st, err := Unwrap(bytes.NewReader(msg), keys)
		if err != nil {
			return err // so small a backup is read to its end while Unwrap looks at it
		}
		defer st.Close()
		if !st.Signature.Trusted {
			t.Errorf("signature: %+v", st.Signature)
		}
		_, err = io.ReadAll(st.Reader) // not io.Copy: readahead's WriteTo gives io.EOF when already at the end
		return err
	}

	made := born.Add(time.Hour) // while the key was valid
	good := sealedAt(t, made, recipient, signer, body, body, func(b []byte) []byte { return b })
	if err := read(good); err != nil {
		t.Errorf("good signature by a since-expired key: %v", err)
	}
	if err := read(sealedAt(t, made, recipient, signer, body, append(bytes.Clone(body), 0), func(b []byte) []byte { return b })); !errors.Is(err, ErrBadSignature) {
		t.Errorf("bad signature by a since-expired key: %v", err)
	}
	if err := signer.RevokeKey(packet.KeyCompromised, "stolen", nil); err != nil {
		t.Fatal(err)
	}
	if err := read(good); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("signature by a revoked key: %v", err)
	}
}
