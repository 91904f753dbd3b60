package recovery

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
)

// Keys is what decrypts a backup: secret keys (for `gpg --encrypt --recipient`
// backups) and a passphrase, which unlocks protected secret keys or, for `gpg
// --symmetric` backups, is the key itself. Signers are what proves a backup is ours.
type Keys struct {
	Entities   openpgp.EntityList
	Passphrase []byte
	// Signers are the public keys whose signatures are trusted: the backup job's
	// signing keys (ReadSignerFile). Empty: signatures are reported, never required.
	Signers openpgp.EntityList
	// Ask, when set, is called once for a passphrase that is needed but was not given
	// (a no-echo prompt on the command line, a form in the console).
	Ask func(prompt string) ([]byte, error)
}

// ReadKeyFile reads an exported secret key file, armored or binary.
func ReadKeyFile(path string) (openpgp.EntityList, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, unwrapPath(err))
	}
	defer f.Close()
	list, err := readKeys(f)
	if err != nil {
		return nil, fmt.Errorf("key file %s is not an OpenPGP key: %v", path, err)
	}
	secret := false
	for _, e := range list {
		if e.PrivateKey != nil {
			secret = true
		}
	}
	if !secret {
		return nil, fmt.Errorf("key file %s holds only public keys; restore needs the secret key (gpg --export-secret-keys)", path)
	}
	return list, nil
}

// readKeys reads OpenPGP keys, armored or binary, deciding by content. Armored files may
// hold several blocks one after another (cat old.asc new.asc > signers.asc, when a
// signing key is rotated).
func readKeys(r io.Reader) (openpgp.EntityList, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(100)
	if !strings.Contains(string(head), "-----BEGIN PGP") {
		return openpgp.ReadKeyRing(br)
	}
	var list openpgp.EntityList
	for {
		block, err := armor.Decode(br)
		if err == io.EOF && len(list) > 0 {
			return list, nil
		}
		if err == io.EOF {
			return nil, errors.New("no complete armored block in it")
		}
		if err != nil {
			return nil, err
		}
		if block.Type != openpgp.PublicKeyType && block.Type != openpgp.PrivateKeyType {
			return nil, fmt.Errorf("it holds a %q block, not a key", block.Type)
		}
		keys, err := openpgp.ReadKeyRing(block.Body)
		if err != nil {
			return nil, err
		}
		list = append(list, keys...)
	}
}

// keyring is what decryption looks keys up in: the signers first, so a signature by a
// trusted signer is checked against the signer's own copy of its key, then the secret keys.
func (k *Keys) keyring() openpgp.EntityList {
	ring := make(openpgp.EntityList, 0, len(k.Signers)+len(k.Entities))
	return append(append(ring, k.Signers...), k.Entities...)
}

// passphrase returns the given passphrase or asks for one once.
func (k *Keys) passphrase(prompt string) ([]byte, error) {
	if k.Passphrase != nil {
		return k.Passphrase, nil
	}
	if k.Ask == nil {
		return nil, &keyError{noPassphrase(prompt), ErrNeedPassphrase}
	}
	p, err := k.Ask(prompt)
	switch {
	case err == nil:
	case errors.Is(err, ErrCancelled):
		return nil, err
	case errors.Is(err, context.Canceled):
		return nil, fmt.Errorf("%w: no %s was given", ErrCancelled, prompt)
	default:
		// A prompt that cannot be answered (stdin closed, no terminal) is a missing
		// passphrase, not a damaged backup.
		return nil, fmt.Errorf("%w (%s: %v)", ErrNoKey, prompt, err)
	}
	k.Passphrase = p
	return p, nil
}

// noPassphrase says which passphrase is missing and how to give it.
func noPassphrase(prompt string) string {
	const how = "use --passphrase-file FILE or $DRCONSOLE_PASSPHRASE (on a terminal, drconsole asks)"
	if prompt == "passphrase for the backup" {
		return "the backup is encrypted with a passphrase (gpg --symmetric), and none was given: " + how
	}
	return "the secret key that opens this backup is protected by a passphrase, and none was given: " + how
}

// prompt is go-crypto's callback. It is called again after every failed attempt, so it
// gives each key one try and then reports the wrong key instead of looping.
func (k *Keys) prompt() openpgp.PromptFunction {
	tries := 0
	return func(locked []openpgp.Key, symmetric bool) ([]byte, error) {
		tries++
		if tries > 1 {
			return nil, ErrWrongKey
		}
		if symmetric {
			return k.passphrase("passphrase for the backup")
		}
		pass, err := k.passphrase("passphrase for the secret key")
		if err != nil {
			return nil, err
		}
		unlocked := false
		for _, key := range locked {
			if key.PrivateKey != nil && key.PrivateKey.Encrypted {
				if key.PrivateKey.Decrypt(pass) == nil {
					unlocked = true
				}
			}
		}
		if !unlocked {
			return nil, ErrWrongKey
		}
		return nil, nil
	}
}

// decryptErr names what went wrong in an OpenPGP failure.
func decryptErr(err error) error {
	var se pgperrors.StructuralError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrWrongKey), errors.Is(err, ErrNoKey), errors.Is(err, ErrCancelled):
		return err
	case errors.Is(err, pgperrors.ErrKeyIncorrect):
		return fmt.Errorf("%w: the backup is encrypted to a key that was not given", ErrWrongKey)
	case errors.Is(err, pgperrors.ErrMDCHashMismatch), errors.Is(err, pgperrors.ErrMDCMissing):
		return fmt.Errorf("%w: encrypted data failed its integrity check (MDC)", ErrCorrupt)
	case isEOF(err):
		return fmt.Errorf("%w: encrypted data ends early", ErrTruncated)
	case errors.As(err, &se):
		return fmt.Errorf("%w: encrypted data: %s", ErrCorrupt, se.Error())
	}
	if _, ok := err.(pgperrors.UnsupportedError); ok {
		return fmt.Errorf("%w: encrypted data: %v", ErrCorrupt, err)
	}
	return fmt.Errorf("%w: decrypting: %v", ErrCorrupt, err)
}
