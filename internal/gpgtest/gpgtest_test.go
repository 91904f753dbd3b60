package gpgtest

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
)

func writeFile(t *testing.T, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "plain.dump")
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKeyRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		algo       Algorithm
		passphrase string
	}{
		{Ed25519, ""},
		{Ed25519, "correct horse battery staple"},
		{RSA3072, ""},
		{RSA3072, "s3cret"},
	} {
		t.Run(string(tc.algo)+"/passphrase="+tc.passphrase, func(t *testing.T) {
			t0 := time.Now()
			k := NewKeyOf(t, tc.algo, "Backup Host", tc.passphrase)
			t.Logf("key made in %v: %s %s", time.Since(t0).Round(time.Millisecond), k.Recipient, k.Fingerprint)

			if len(k.Fingerprint) != 40 || k.Recipient != "backup.host@drconsole.test" {
				t.Errorf("fingerprint %q, recipient %q", k.Fingerprint, k.Recipient)
			}
			if !bytes.HasPrefix(readFile(t, k.PublicFile), []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
				t.Error("PublicFile is not an armored public key")
			}
			if !bytes.HasPrefix(readFile(t, k.SecretFile), []byte("-----BEGIN PGP PRIVATE KEY BLOCK-----")) {
				t.Error("SecretFile is not an armored secret key")
			}
			if b := readFile(t, k.SecretFileBinary); len(b) == 0 || b[0]&0x80 == 0 {
				t.Error("SecretFileBinary is not a binary OpenPGP packet stream")
			}

			plain := writeFile(t, "PGDMP fake dump\n")
			enc := plain + ".gpg"
			k.Encrypt(t, plain, enc)
			if b := readFile(t, enc); bytes.Contains(b, []byte("PGDMP")) || b[0]&0x80 == 0 {
				t.Error("encrypted file is plaintext or armored")
			}
			out := plain + ".out"
			k.Decrypt(t, enc, out)
			if got := string(readFile(t, out)); got != "PGDMP fake dump\n" {
				t.Errorf("decrypted %q", got)
			}

			if tc.passphrase != "" {
				// The agent caches nothing, so a wrong passphrase must fail even
				// right after a successful decryption.
				if err := k.decrypt("wrong", enc, out); err == nil {
					t.Error("decrypted with a wrong passphrase")
				}
				if err := k.decrypt("", enc, out); err == nil {
					t.Error("decrypted without the passphrase")
				}
			}
		})
	}
}

func TestSecretFileImportsElsewhere(t *testing.T) {
	// The exported secret key, alone, must decrypt: that is what an operator
	// brings to a restore.
	k := NewKey(t, "Exporter", "pw")
	plain := writeFile(t, "payload")
	k.Encrypt(t, plain, plain+".gpg")

	for _, secret := range []string{k.SecretFile, k.SecretFileBinary} {
		other := &Key{Home: newHome(t, agentConf+fastS2K), Passphrase: k.Passphrase}
		if _, err := gpg(other.Home, "", "--import", secret); err != nil {
			t.Fatal(err)
		}
		other.Decrypt(t, plain+".gpg", plain+".out")
		if got := string(readFile(t, plain+".out")); got != "payload" {
			t.Errorf("decrypted %q", got)
		}
	}
}

func TestSymmetricRoundTrip(t *testing.T) {
	plain := writeFile(t, "symmetric payload")
	EncryptSymmetric(t, "tabletop", plain, plain+".gpg")
	if b := readFile(t, plain+".gpg"); bytes.Contains(b, []byte("symmetric payload")) {
		t.Fatal("not encrypted")
	}
	DecryptSymmetric(t, "tabletop", plain+".gpg", plain+".out")
	if got := string(readFile(t, plain+".out")); got != "symmetric payload" {
		t.Errorf("decrypted %q", got)
	}
}

func TestHomeIsRemoved(t *testing.T) {
	var home string
	t.Run("inner", func(t *testing.T) {
		home = NewKey(t, "Gone", "").Home
		if len(home) > 40 {
			t.Errorf("home %q is too long for gpg-agent's socket", home)
		}
		if fi, err := os.Stat(home); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("home %s: %v, mode %v", home, err, fi.Mode())
		}
	})
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Errorf("home %s still there: %v", home, err)
	}
}

func TestBadName(t *testing.T) {
	if _, err := generate(t.TempDir(), Ed25519, "Evil <x@y>", ""); err == nil || !strings.Contains(err.Error(), "name") {
		t.Errorf("err = %v", err)
	}
}

func TestGoOpenPGPReadsKeysAndFiles(t *testing.T) {
	// drconsole decrypts in process with go-crypto; the keys and files made
	// here must be ones it can read, or the helpers test nothing.
	for _, algo := range []Algorithm{Ed25519, RSA3072} {
		t.Run(string(algo), func(t *testing.T) {
			k := NewKeyOf(t, algo, "Go Reader", "pw")
			plain := writeFile(t, "for go-crypto")
			k.Encrypt(t, plain, plain+".gpg")
			for _, file := range []string{k.SecretFile, k.SecretFileBinary} {
				f, err := os.Open(file)
				if err != nil {
					t.Fatal(err)
				}
				var keys openpgp.EntityList
				if file == k.SecretFile {
					keys, err = openpgp.ReadArmoredKeyRing(f)
				} else {
					keys, err = openpgp.ReadKeyRing(f)
				}
				f.Close()
				if err != nil {
					t.Fatalf("read %s: %v", file, err)
				}
				for _, e := range keys {
					if err := e.DecryptPrivateKeys([]byte(k.Passphrase)); err != nil {
						t.Fatalf("unlock %s: %v", file, err)
					}
				}
				enc, err := os.Open(plain + ".gpg")
				if err != nil {
					t.Fatal(err)
				}
				md, err := openpgp.ReadMessage(enc, keys, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(md.UnverifiedBody)
				enc.Close()
				if err != nil || string(got) != "for go-crypto" {
					t.Fatalf("decrypted %q, %v", got, err)
				}
			}
		})
	}

	t.Run("symmetric", func(t *testing.T) {
		plain := writeFile(t, "symmetric for go-crypto")
		EncryptSymmetric(t, "pw", plain, plain+".gpg")
		enc, err := os.Open(plain + ".gpg")
		if err != nil {
			t.Fatal(err)
		}
		defer enc.Close()
		prompt := func([]openpgp.Key, bool) ([]byte, error) { return []byte("pw"), nil }
		md, err := openpgp.ReadMessage(enc, nil, prompt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(md.UnverifiedBody); err != nil || string(got) != "symmetric for go-crypto" {
			t.Fatalf("decrypted %q, %v", got, err)
		}
	})
}

func TestSignEncryptVerifies(t *testing.T) {
	// A protected signer proves the passphrase reaches gpg's signing through loopback.
	signer := NewKey(t, "Ops Signer", "sign pw")
	restorer := NewKey(t, "Restore Host", "")
	plain := writeFile(t, "PGDMP signed dump\n")
	signer.SignEncrypt(t, restorer, plain, plain+".gpg")
	if b := readFile(t, plain+".gpg"); bytes.Contains(b, []byte("PGDMP")) || b[0]&0x80 == 0 {
		t.Fatal("signed file is plaintext or armored")
	}

	status, err := restorer.DecryptVerify(t, plain+".gpg", plain+".out", signer)
	if err != nil {
		t.Fatalf("%v\n%s", err, status)
	}
	if !strings.Contains(status, "[GNUPG:] GOODSIG "+signer.LongKeyID()+" ") || !strings.Contains(status, "[GNUPG:] VALIDSIG "+signer.Fingerprint+" ") {
		t.Errorf("no good signature by %s in gpg's status:\n%s", signer.Fingerprint, status)
	}
	if got := string(readFile(t, plain+".out")); got != "PGDMP signed dump\n" {
		t.Errorf("decrypted %q", got)
	}

	// Without the signer's public key gpg decrypts but cannot call the signature good.
	stranger := NewKey(t, "Stranger", "")
	signer.SignEncrypt(t, stranger, plain, plain+".2.gpg")
	status, _ = stranger.DecryptVerify(t, plain+".2.gpg", plain+".2.out")
	if strings.Contains(status, "GOODSIG") || !strings.Contains(status, "NO_PUBKEY "+signer.LongKeyID()) {
		t.Errorf("unknown signer, gpg's status:\n%s", status)
	}

	// An encrypted-only file carries no signature at all.
	restorer.Encrypt(t, plain, plain+".3.gpg")
	status, err = restorer.DecryptVerify(t, plain+".3.gpg", plain+".3.out", signer)
	if err != nil || strings.Contains(status, "NEWSIG") || strings.Contains(status, "GOODSIG") {
		t.Errorf("unsigned file: %v, status:\n%s", err, status)
	}

	// go-crypto, which drconsole reads with, sees the same signer and a good signature.
	var ring openpgp.EntityList
	for _, file := range []string{restorer.SecretFile, signer.PublicFile} {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := openpgp.ReadArmoredKeyRing(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		ring = append(ring, keys...)
	}
	enc, err := os.Open(plain + ".gpg")
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	md, err := openpgp.ReadMessage(enc, ring, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !md.IsSigned || md.SignedBy == nil || md.SignedByKeyId != ring[1].PrimaryKey.KeyId {
		t.Fatalf("go-crypto: signed %v by %X (key %v)", md.IsSigned, md.SignedByKeyId, md.SignedBy)
	}
	if _, err := io.ReadAll(md.UnverifiedBody); err != nil || md.SignatureError != nil || md.Signature == nil {
		t.Errorf("go-crypto: read %v, signature error %v", err, md.SignatureError)
	}
}
