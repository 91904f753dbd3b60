package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"golang.org/x/term"

	"drconsole/recovery"
	"drconsole/storage"
)

func init() {
	register(&command{
		name:    "backup",
		usage:   "backup [--gpg-recipient FILE] [--sign-key FILE] [--passphrase-file FILE] [--location NAME] [--kind full|incremental] [--json]",
		summary: "make a backup in the backup job's format (pg_dump -Fc, gzip, OpenPGP) and store it atomically",
		run:     runBackup,
	})
}

func runBackup(ctx context.Context, a *app, args []string) error {
	c := commands["backup"]
	fs := a.flags(c)
	var conn connFlags
	conn.add(fs)
	recipient := fs.String("gpg-recipient", "", "OpenPGP public key `file` to encrypt to (as gpg --encrypt --recipient); without it the backup is not encrypted")
	signKey := fs.String("sign-key", "", "OpenPGP secret key `file` to sign the encrypted backup with (as gpg --sign --encrypt; default: $DRCONSOLE_SIGN_KEY, else sign_key in the config file)")
	passFile := fs.String("passphrase-file", "", "`file` holding the signing key's passphrase (default: $DRCONSOLE_PASSPHRASE, else a prompt)")
	locName := fs.String("location", "", "store into this configured location only (default: every S3 location in order, primary first, else the local directory)")
	kind := fs.String("kind", "full", "backup kind in the name: full or incremental")
	asJSON := fs.Bool("json", false, "print what was stored as JSON on stdout")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("backup takes no arguments; name the database with --db-url, DB_NAME or PGDATABASE")
	}
	if *kind != "full" && *kind != "incremental" {
		return usagef("--kind must be full or incremental")
	}
	cn, err := conn.resolve(a)
	if err != nil {
		return err
	}
	opts := recovery.BackupOptions{Conn: cn, Kind: storage.Kind(*kind)}
	if *recipient != "" {
		if opts.Recipients, err = recovery.ReadRecipientFile(*recipient); err != nil {
			return usageError{err}
		}
	}
	if opts.Signer, err = a.signingKey(*signKey, *passFile); err != nil {
		return err
	}
	switch {
	case opts.Signer != nil && len(opts.Recipients) == 0:
		return usagef("--sign-key signs what drconsole encrypts: give --gpg-recipient too")
	case opts.Signer == nil && len(opts.Recipients) > 0:
		fmt.Fprintln(a.stderr, "drconsole backup: warning: the backup is encrypted but not signed, so a restore cannot prove it is yours; give --sign-key (or sign_key in the config file)")
	}
	locs, err := a.locations(ctx)
	if err != nil {
		return err
	}
	targets := backupTargets(locs, *locName)
	if len(targets) == 0 {
		return usagef("no location named %q is configured", *locName)
	}
	// One dump, stored in the first target; the others get a second upload of the same
	// bytes (as the backup job does), never a second, different dump.
	first, err := recovery.CreateBackup(ctx, opts, targets[0], newProgress(a, "backup", *asJSON))
	if err != nil {
		return fmt.Errorf("location %s: %w", targets[0].Name(), err)
	}
	stored := []storage.Backup{first}
	var failed []storage.Copied
	for _, c := range storage.Replicate(ctx, targets[0], first, targets[1:]) {
		if c.Err != nil {
			failed = append(failed, c)
			continue
		}
		stored = append(stored, c.Backup)
	}
	if !*asJSON {
		where := map[string]string{}
		for _, l := range targets {
			where[l.Name()] = l.String()
		}
		for _, b := range stored {
			fmt.Fprintf(a.stdout, "stored %s (%s) in %s (%s)\n", storage.Printable(b.Name), humanBytes(b.Size), b.Location, where[b.Location])
		}
	}
	if len(failed) > 0 {
		if *asJSON {
			writeJSON(a.stdout, map[string]any{"stored": stored, "failed": failed})
		}
		var why []string
		for _, c := range failed {
			why = append(why, c.Location+": "+c.Error)
		}
		return fmt.Errorf("stored %s in %s, but not in every location (%s): %w", first.Name, targets[0].Name(), strings.Join(why, "; "), failed[0].Err)
	}
	if *asJSON {
		return writeJSON(a.stdout, map[string]any{"stored": stored})
	}
	return nil
}

// backupTargets is where a backup goes: the named location; else every S3 location in
// configuration order (primary, then secondary: a second upload, as the backup job
// does); else the local directory.
func backupTargets(locs []storage.Location, name string) []storage.Location {
	var out []storage.Location
	for _, l := range locs {
		if name != "" && l.Name() == name {
			return []storage.Location{l}
		}
		if name == "" {
			if _, ok := l.(*storage.S3); ok {
				out = append(out, l)
			}
		}
	}
	if name != "" {
		return nil
	}
	if len(out) == 0 {
		for _, l := range locs {
			if _, ok := l.(*storage.Dir); ok {
				return []storage.Location{l}
			}
		}
	}
	return out
}

// signingKey loads the key backups are signed with: --sign-key, else $DRCONSOLE_SIGN_KEY,
// else sign_key in the configuration file; nil when none is named. A protected key's
// passphrase comes from --passphrase-file or $DRCONSOLE_PASSPHRASE, else a no-echo prompt.
func (a *app) signingKey(flagValue, passFile string) (*openpgp.Entity, error) {
	path := flagValue
	if path == "" {
		path = a.getenv("DRCONSOLE_SIGN_KEY")
	}
	if path == "" {
		if cfg, err := storage.LoadConfig(a.configPath, a.getenv); err == nil {
			path = cfg.SignKey
		}
	}
	if path == "" {
		return nil, nil
	}
	pass, err := a.passphrase(passFile)
	if err != nil {
		return nil, err
	}
	key, err := recovery.ReadSigningKeyFile(path, pass)
	if errors.Is(err, recovery.ErrNoKey) && pass == nil && a.stdinIsTerminal() {
		f := a.stdin.(*os.File)
		fmt.Fprintf(a.stderr, "Enter the passphrase of the signing key %s: ", path)
		pass, perr := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if perr != nil {
			return nil, fmt.Errorf("%w: %v", recovery.ErrNoKey, perr)
		}
		key, err = recovery.ReadSigningKeyFile(path, pass)
	}
	return key, err
}
