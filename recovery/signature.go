package recovery

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Signatures answer the ransomware question "is this backup really ours?": anyone who can
// write to the bucket can plant a backup, and restoring it runs its SQL as a privileged role.

var (
	// ErrUnsigned: signers are required and the backup carries no signature (or one by a
	// key that is not a trusted signer; see Signature.Require).
	ErrUnsigned = errors.New("backup is not signed")
	// ErrBadSignature: the backup's signature was checked against a key we hold and
	// does not verify. A stream fails with it at its end, never with io.EOF.
	ErrBadSignature = errors.New("backup signature does not verify")
)

// Signature is who signed a backup's OpenPGP layer, known as soon as decryption starts
// (the one-pass signature packet comes before the data).
type Signature struct {
	Signed   bool
	KeyID    uint64 // the signing key (or subkey) as the message names it
	KeyIDHex string // KeyID as gpg prints a long key ID: 16 upper-case hex digits
	Signer   string // the signer's primary identity when the key is among Keys.Signers
	// Trusted: signed by one of Keys.Signers. The signature itself is verified at the end
	// of the stream; a stream whose trusted signature does not verify fails there with
	// ErrBadSignature, so a Trusted stream read to its EOF is proven.
	Trusted bool
}

// String says who signed, in the words pre-flight uses.
func (s Signature) String() string {
	switch {
	case s.Trusted && s.Signer != "":
		return fmt.Sprintf("signed by %s (%s)", s.KeyIDHex, s.Signer)
	case s.Trusted:
		return "signed by " + s.KeyIDHex
	case s.Signed:
		return "signed by an unknown key " + s.KeyIDHex
	}
	return "not signed"
}

// Require is the policy when signers are configured: nil for a trusted signer, otherwise
// an error wrapping ErrUnsigned that says what the backup carries instead.
func (s Signature) Require() error {
	switch {
	case s.Trusted:
		return nil
	case s.Signed:
		return &keyError{fmt.Sprintf("backup is signed by %s, which is not one of the trusted signers", s.KeyIDHex), ErrUnsigned}
	}
	return ErrUnsigned
}

// better reports whether s says more for the dump than t: a trusted signer beats an
// unknown one, which beats none. Every OpenPGP layer's signature covers all the layers
// inside it, so the best one speaks for the dump.
func (s Signature) better(t Signature) bool {
	rank := func(x Signature) int {
		switch {
		case x.Trusted:
			return 2
		case x.Signed:
			return 1
		}
		return 0
	}
	return rank(s) > rank(t)
}

// signatureCheck holds a message to its signature at the end of its body.
type signatureCheck struct {
	md  *openpgp.MessageDetails
	sig Signature
}

// newSignatureCheck reads what the message says about its signer, right after
// openpgp.ReadMessage returned, before any of the body is read.
func newSignatureCheck(md *openpgp.MessageDetails, signers openpgp.EntityList) *signatureCheck {
	c := &signatureCheck{md: md}
	if !md.IsSigned {
		return c
	}
	c.sig = Signature{Signed: true, KeyID: md.SignedByKeyId, KeyIDHex: fmt.Sprintf("%016X", md.SignedByKeyId)}
	if keys := signers.KeysByIdUsage(md.SignedByKeyId, packet.KeyFlagSign); len(keys) > 0 {
		c.sig.Trusted = true
		if id := keys[0].Entity.PrimaryIdentity(); id != nil {
			c.sig.Signer = id.Name
		}
	}
	return c
}

// atEOF is called when the body has been read to its end, when go-crypto has checked the
// signature. Any signature go-crypto could check (its key is among the signers or the
// decryption keys) must verify: a signature that fails against a key we hold means the
// data is not what was signed. Signatures by unknown keys and unsigned messages pass:
// the caller decides from Signature.
func (c *signatureCheck) atEOF() error {
	md := c.md
	if !md.IsSigned || (md.SignedBy == nil && !c.sig.Trusted) {
		return nil
	}
	who := c.sig.KeyIDHex
	if c.sig.Signer != "" {
		who += " (" + c.sig.Signer + ")"
	}
	switch {
	case md.SignedBy == nil:
		// Cannot happen (the signers are in the keyring), but a trusted signature must
		// never pass unchecked.
		return fmt.Errorf("%w: signature by %s was not checked", ErrBadSignature, who)
	case md.SignatureError != nil && !c.madeWhileKeyValid():
		return fmt.Errorf("%w: signature by %s: %v", ErrBadSignature, who, md.SignatureError)
	case md.Signature == nil:
		return fmt.Errorf("%w: no signature by %s follows the data", ErrBadSignature, who)
	}
	return nil
}

// madeWhileKeyValid lets through one failure go-crypto reports: a good signature by a key
// that has expired since. go-crypto judges expiry at the time of reading, but a backup
// signed while its key was valid stays signed (gpg: EXPKEYSIG, a good signature by an
// expired key); a restore months later must not call it tampered with. go-crypto only
// reports expiry after the signature value verified and the key was found not revoked.
func (c *signatureCheck) madeWhileKeyValid() bool {
	md := c.md
	if !errors.Is(md.SignatureError, pgperrors.ErrKeyExpired) || md.Signature == nil || md.SignedBy == nil {
		return false
	}
	key, made := md.SignedBy, md.Signature.CreationTime
	self, _ := key.Entity.PrimarySelfSignature()
	if self == nil || key.Entity.PrimaryKey.KeyExpired(self, made) {
		return false
	}
	if key.PublicKey != key.Entity.PrimaryKey && (key.SelfSignature == nil || key.PublicKey.KeyExpired(key.SelfSignature, made)) {
		return false
	}
	return !md.Signature.SigExpired(time.Now())
}

// ReadSignerFile reads the public keys whose signatures are trusted (the backup job's
// signing keys), armored or binary. A secret key file is accepted too; its secret parts
// are dropped, so a signer can never decrypt or be asked for a passphrase.
func ReadSignerFile(path string) (openpgp.EntityList, error) {
	list, err := readKeyRing(path, "signer key")
	if err != nil {
		return nil, err
	}
	for _, e := range list {
		e.PrivateKey = nil
		for i := range e.Subkeys {
			e.Subkeys[i].PrivateKey = nil
		}
	}
	return list, nil
}

// ReadSigningKeyFile reads the secret key drconsole backup signs with, unlocked with
// passphrase when it is protected. Of several secret keys in the file, the first that
// can sign is used.
func ReadSigningKeyFile(path string, passphrase []byte) (*openpgp.Entity, error) {
	list, err := readKeyRing(path, "signing key")
	if err != nil {
		return nil, err
	}
	secret := false
	for _, e := range list {
		key, ok := e.SigningKey(time.Now())
		if e.PrivateKey != nil || ok && key.PrivateKey != nil {
			secret = true
		}
		if !ok || key.PrivateKey == nil || key.PrivateKey.Dummy() {
			continue
		}
		if key.PrivateKey.Encrypted {
			if len(passphrase) == 0 {
				return nil, &keyError{fmt.Sprintf("signing key %s is protected by a passphrase and none was given", path), ErrNoKey}
			}
			if err := key.PrivateKey.Decrypt(passphrase); err != nil {
				return nil, &keyError{fmt.Sprintf("signing key %s: wrong passphrase", path), ErrWrongKey}
			}
		}
		return e, nil
	}
	if !secret {
		return nil, fmt.Errorf("signing key %s holds only public keys; signing needs the secret key (gpg --export-secret-keys)", path)
	}
	return nil, fmt.Errorf("signing key %s has no secret key that can sign (expired, revoked, or its signing key was not exported)", path)
}

// readKeyRing reads an OpenPGP key file, armored or binary, into one line's error.
func readKeyRing(path, what string) (openpgp.EntityList, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", what, path, unwrapPath(err))
	}
	defer f.Close()
	list, err := readKeys(f)
	if err == nil && len(list) == 0 {
		err = errors.New("no keys in it")
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s is not an OpenPGP key: %v", what, path, err)
	}
	return list, nil
}

// keyError is a sentinel with a message of its own: "signing key k.asc: wrong
// passphrase" reads better than the sentinel's text about decrypting backups.
type keyError struct {
	msg      string
	sentinel error
}

func (e *keyError) Error() string { return e.msg }
func (e *keyError) Unwrap() error { return e.sentinel }
