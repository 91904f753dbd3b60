// Package gpgtest makes real OpenPGP keys and encrypted files with the real gpg CLI,
// exactly as the backup host does, in throwaway GnuPG homes deleted after the test.
package gpgtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Key is a key pair in its own GnuPG home, with its exports on disk.
type Key struct {
	Home             string // GNUPGHOME, a short 0700 directory under /tmp
	Recipient        string // the key's email, for --recipient
	Fingerprint      string // of the primary key
	PublicFile       string // armored public key (for `backup --gpg-recipient FILE`)
	SecretFile       string // armored secret key (for `restore --gpg-key FILE`), protected by Passphrase if set
	SecretFileBinary string // the same secret key, binary
	Passphrase       string // "" means the secret key is not protected
}

// Algorithm is the kind of key NewKey makes.
type Algorithm string

const (
	// Ed25519 is an ed25519 signing key with a cv25519 encryption subkey: gpg's
	// default since 2.3, and made in well under a second.
	Ed25519 Algorithm = "ed25519"
	// RSA3072 is an RSA-3072 key with an RSA-3072 encryption subkey, as older
	// backup hosts have; it takes a few hundred milliseconds more to make.
	RSA3072 Algorithm = "rsa3072"
)

// NewKey makes a fresh Ed25519/Cv25519 key pair for name (used as the real name and,
// lower-cased, as the email's local part), protected by passphrase unless it is "".
// The key's home is deleted, and its gpg-agent stopped, when the test ends.
// Without gpg the test is skipped, or fails when CI=true.
func NewKey(t testing.TB, name, passphrase string) *Key {
	t.Helper()
	return NewKeyOf(t, Ed25519, name, passphrase)
}

// NewKeyOf is NewKey for a chosen algorithm.
func NewKeyOf(t testing.TB, algo Algorithm, name, passphrase string) *Key {
	t.Helper()
	home := newHome(t, agentConf+fastS2K)
	k, err := generate(home, algo, name, passphrase)
	if err != nil {
		t.Fatalf("gpgtest: make %s key for %q: %v", algo, name, err)
	}
	return k
}

// Encrypt encrypts in to out for the key, exactly as the backup job does: public-key,
// binary (not armored), trusting the key without a signature.
func (k *Key) Encrypt(t testing.TB, in, out string) {
	t.Helper()
	if _, err := gpg(k.Home, "", "--yes", "--trust-model", "always",
		"--encrypt", "--recipient", k.Recipient, "-o", out, in); err != nil {
		t.Fatalf("gpgtest: encrypt %s for %s: %v", in, k.Recipient, err)
	}
}

// Decrypt decrypts in to out with the key (and its passphrase, if it has one).
func (k *Key) Decrypt(t testing.TB, in, out string) {
	t.Helper()
	if err := k.decrypt(k.Passphrase, in, out); err != nil {
		t.Fatalf("gpgtest: decrypt %s with %s: %v", in, k.Recipient, err)
	}
}

func (k *Key) decrypt(passphrase, in, out string) error {
	_, err := gpg(k.Home, passphrase, "--yes", "-d", "-o", out, in)
	return err
}

// SignEncrypt signs in with the key and encrypts it to recipient in one message, exactly
// as a backup job that signs does: gpg --sign --local-user SIGNER --encrypt --recipient R,
// binary. The recipient's public key is imported into the signer's home first.
func (k *Key) SignEncrypt(t testing.TB, recipient *Key, in, out string) {
	t.Helper()
	k.Import(t, recipient.PublicFile)
	if _, err := gpg(k.Home, k.Passphrase, "--yes", "--trust-model", "always",
		"--sign", "--local-user", k.Fingerprint,
		"--encrypt", "--recipient", recipient.Fingerprint, "-o", out, in); err != nil {
		t.Fatalf("gpgtest: sign %s as %s and encrypt for %s: %v", in, k.Recipient, recipient.Recipient, err)
	}
}

// DecryptVerify decrypts in to out with the key, checking any signature against the
// public keys of signers (imported into the key's home first), as `gpg --decrypt` does
// on a host that knows the signers. It returns gpg's machine-readable status lines
// (--status-fd: "[GNUPG:] GOODSIG KEYID NAME", VALIDSIG, BADSIG, ERRSIG, NO_PUBKEY …) and
// gpg's failure, if any: gpg exits non-zero on a bad signature, so the test decides.
func (k *Key) DecryptVerify(t testing.TB, in, out string, signers ...*Key) (status string, err error) {
	t.Helper()
	for _, s := range signers {
		k.Import(t, s.PublicFile)
	}
	return gpg(k.Home, k.Passphrase, "--yes", "--trust-model", "always", "--status-fd", "1",
		"--decrypt", "-o", out, in)
}

// Import imports a key file (public or secret) into the key's home.
func (k *Key) Import(t testing.TB, file string) {
	t.Helper()
	if _, err := gpg(k.Home, "", "--import", file); err != nil {
		t.Fatalf("gpgtest: import %s into %s: %v", file, k.Home, err)
	}
}

// LongKeyID is the key's long (16 hex digit) key ID, as gpg prints it in GOODSIG and as
// a signature names its signer: the primary key signs (Key-Usage: sign).
func (k *Key) LongKeyID() string { return k.Fingerprint[len(k.Fingerprint)-16:] }

// EncryptSymmetric encrypts in to out with a passphrase only, as `gpg --symmetric`
// does on a backup host (binary, gpg's default cipher and S2K).
func EncryptSymmetric(t testing.TB, passphrase, in, out string) {
	t.Helper()
	home := newHome(t, agentConf)
	if _, err := gpg(home, passphrase, "--yes", "--symmetric", "-o", out, in); err != nil {
		t.Fatalf("gpgtest: encrypt %s with a passphrase: %v", in, err)
	}
}

// DecryptSymmetric decrypts a passphrase-encrypted file in to out with real gpg.
func DecryptSymmetric(t testing.TB, passphrase, in, out string) {
	t.Helper()
	home := newHome(t, agentConf)
	if _, err := gpg(home, passphrase, "--yes", "-d", "-o", out, in); err != nil {
		t.Fatalf("gpgtest: decrypt %s with a passphrase: %v", in, err)
	}
}

var gpgPath struct {
	once sync.Once
	path string
	err  error
}

// errNoGPG marks a machine without gpg: a skip locally, a failure in CI.
var errNoGPG = errors.New("no gpg on PATH")

func findGPG() (string, error) {
	gpgPath.once.Do(func() {
		for _, name := range []string{"gpg", "gpg2"} {
			if p, err := exec.LookPath(name); err == nil {
				gpgPath.path = p
				return
			}
		}
		gpgPath.err = errNoGPG
	})
	return gpgPath.path, gpgPath.err
}

// agentConf keeps the agent from remembering passphrases, so every decryption in a
// test proves the passphrase it was given, and allows loopback pinentry.
const agentConf = "allow-loopback-pinentry\ndefault-cache-ttl 0\nmax-cache-ttl 0\n"

// fastS2K protects secret keys with gpg's smallest S2K iteration count instead of
// one calibrated to take ~100 ms per use: a passphrase-protected key is then made
// and exported in ~0.1 s instead of 3-8 s. Same S2K kind (iterated+salted), only
// fewer iterations. Symmetric encryption keeps gpg's calibrated default, so those
// files look exactly like a backup host's.
const fastS2K = "s2k-count 65536\n"

// newHome makes a GnuPG home that is removed, with its agent, when the test ends.
// It lives directly under /tmp because gpg-agent's socket path must stay short.
func newHome(t testing.TB, conf string) string {
	t.Helper()
	if _, err := findGPG(); err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("gpgtest: %v (CI=true: gpg must be installed)", err)
		}
		t.Skipf("gpgtest: %v (install gnupg)", err)
	}
	root := os.TempDir()
	if len(root) > 40 {
		root = "/tmp"
	}
	home, err := os.MkdirTemp(root, "g")
	if err != nil {
		t.Fatalf("gpgtest: %v", err)
	}
	t.Cleanup(func() {
		// The agent starts on first use and outlives gpg; stop it before deleting
		// its home. gpgconf is optional: a missing one leaves the agent to notice
		// its socket is gone and exit on its own.
		exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run()
		if err := os.RemoveAll(home); err != nil {
			t.Errorf("gpgtest: %v", err)
		}
	})
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatalf("gpgtest: %v", err)
	}
	if err := os.WriteFile(filepath.Join(home, "gpg-agent.conf"), []byte(conf), 0o600); err != nil {
		t.Fatalf("gpgtest: %v", err)
	}
	return home
}

// gpg runs gpg in batch mode on home; a non-empty passphrase is given on stdin. It
// returns gpg's standard output even when gpg fails (a status report, say).
func gpg(home, passphrase string, args ...string) (string, error) {
	path, err := findGPG()
	if err != nil {
		return "", err
	}
	all := []string{"--homedir", home, "--batch", "--no-tty", "--pinentry-mode", "loopback"}
	if passphrase != "" {
		all = append(all, "--passphrase-fd", "0")
	}
	all = append(all, args...)
	cmd := exec.Command(path, all...)
	cmd.Env = append(withoutGnuPGEnv(os.Environ()), "GNUPGHOME="+home)
	if passphrase != "" {
		cmd.Stdin = strings.NewReader(passphrase + "\n")
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("gpg %s: %v\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func withoutGnuPGEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GNUPGHOME=") && !strings.HasPrefix(kv, "GPG_AGENT_INFO=") {
			out = append(out, kv)
		}
	}
	return out
}

var keyParams = map[Algorithm]string{
	Ed25519: "Key-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\nSubkey-Type: ecdh\nSubkey-Curve: cv25519\nSubkey-Usage: encrypt\n",
	RSA3072: "Key-Type: RSA\nKey-Length: 3072\nKey-Usage: sign\nSubkey-Type: RSA\nSubkey-Length: 3072\nSubkey-Usage: encrypt\n",
}

func generate(home string, algo Algorithm, name, passphrase string) (*Key, error) {
	params, ok := keyParams[algo]
	if !ok {
		return nil, fmt.Errorf("unknown algorithm %q", algo)
	}
	if strings.ContainsAny(name, "\n<>()") || strings.TrimSpace(name) == "" {
		return nil, fmt.Errorf("name must be a non-empty single line without <>()")
	}
	if strings.Contains(passphrase, "\n") {
		return nil, fmt.Errorf("passphrase must be a single line")
	}
	local := strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(name), "."), ".")
	if local == "" {
		local = "key"
	}
	k := &Key{
		Home:             home,
		Recipient:        local + "@drconsole.test",
		PublicFile:       filepath.Join(home, "public.asc"),
		SecretFile:       filepath.Join(home, "secret.asc"),
		SecretFileBinary: filepath.Join(home, "secret.gpg"),
		Passphrase:       passphrase,
	}
	params += "Name-Real: " + name + "\nName-Email: " + k.Recipient + "\nExpire-Date: 0\n"
	if passphrase == "" {
		params += "%no-protection\n"
	}
	// The passphrase goes in on stdin (loopback pinentry), not as a Passphrase:
	// line, which makes gpg 2.2 fail now and then with "can't get input".
	params += "%commit\n"
	paramFile := filepath.Join(home, "key-params")
	if err := os.WriteFile(paramFile, []byte(params), 0o600); err != nil {
		return nil, err
	}
	if _, err := gpg(home, passphrase, "--generate-key", paramFile); err != nil {
		return nil, err
	}
	os.Remove(paramFile)

	listing, err := gpg(home, "", "--with-colons", "--list-secret-keys", k.Recipient)
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(listing, "\n") {
		if f := strings.Split(line, ":"); f[0] == "fpr" && len(f) > 9 {
			k.Fingerprint = f[9]
			break
		}
	}
	if k.Fingerprint == "" {
		return nil, fmt.Errorf("no fingerprint in gpg's listing:\n%s", listing)
	}
	if _, err := gpg(home, "", "--armor", "--export", "-o", k.PublicFile, k.Fingerprint); err != nil {
		return nil, err
	}
	if _, err := gpg(home, passphrase, "--armor", "--export-secret-keys", "-o", k.SecretFile, k.Fingerprint); err != nil {
		return nil, err
	}
	if _, err := gpg(home, passphrase, "--export-secret-keys", "-o", k.SecretFileBinary, k.Fingerprint); err != nil {
		return nil, err
	}
	return k, nil
}
