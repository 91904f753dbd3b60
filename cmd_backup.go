package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"drconsole/recovery"
	"drconsole/storage"
)

type backupOptions struct {
	conn      connFlags
	recipient string
	signKey   string
	passFile  string
	location  string
	kind      string
	json      bool
}

func newBackupCmd(a *app) *cobra.Command {
	o := &backupOptions{}
	c := &cobra.Command{
		Use:   "backup [flags]",
		Short: "make a backup as the backup job does (encrypted, signed), stored atomically",
		Long: `Makes a backup exactly as the backup job does (pg_dump -Fc -b, gzip, OpenPGP to the
--gpg-recipient key, binary), signed with --sign-key as gpg --sign --encrypt signs, named
spywatcher_full_YYYYMMDD_HHMMSS.dump.gz.gpg, and stores it atomically in every S3 location
(one dump, uploaded to each), else the local directory.`,
		Example: "  DB_NAME=spywatcher drconsole backup --gpg-recipient ops-public.asc --sign-key job-secret.asc",
		Args:    noArgs("; name the database with --db-url, DB_NAME or PGDATABASE"),
		RunE:    func(c *cobra.Command, _ []string) error { return runBackup(c.Context(), a, o) },
	}
	f := c.Flags()
	o.conn.add(f)
	f.StringVar(&o.recipient, "gpg-recipient", "", "OpenPGP public key `file` to encrypt to (as gpg --encrypt --recipient); without it the backup is not encrypted")
	f.StringVar(&o.signKey, "sign-key", "", "OpenPGP secret key `file` to sign the encrypted backup with (as gpg --sign --encrypt; default: $DRCONSOLE_SIGN_KEY, else sign_key in the config file)")
	f.StringVar(&o.passFile, "passphrase-file", "", "`file` holding the signing key's passphrase (default: $DRCONSOLE_PASSPHRASE, else a prompt)")
	f.StringVar(&o.location, "location", "", "store into this configured `location` only (default: every S3 location in order, primary first, else the local directory)")
	f.StringVar(&o.kind, "kind", "full", "backup `kind` in the name: full or incremental")
	f.BoolVar(&o.json, "json", false, "print what was stored as JSON on stdout")
	return c
}

func runBackup(ctx context.Context, a *app, o *backupOptions) error {
	if o.kind != "full" && o.kind != "incremental" {
		return usagef("--kind must be full or incremental")
	}
	cn, err := o.conn.resolve(a)
	if err != nil {
		return err
	}
	opts := recovery.BackupOptions{Conn: cn, Kind: storage.Kind(o.kind), Prefix: a.backupPrefixes(cn.Database)[0]}
	if o.recipient != "" {
		if opts.Recipients, err = recovery.ReadRecipientFile(o.recipient); err != nil {
			return usageError{err}
		}
	}
	if opts.Signer, err = a.signingKey(o.signKey, o.passFile); err != nil {
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
	targets := backupTargets(locs, o.location)
	if len(targets) == 0 {
		return usagef("no location named %q is configured", o.location)
	}
	// One dump, stored in the first target; the others get a second upload of the same
	// bytes (as the backup job does), never a second, different dump.
	first, err := recovery.CreateBackup(ctx, opts, targets[0], newProgress(a, "backup", o.json))
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
	if !o.json {
		where := map[string]string{}
		for _, l := range targets {
			where[l.Name()] = l.String()
		}
		for _, b := range stored {
			fmt.Fprintf(a.stdout, "stored %s (%s) in %s (%s)\n", storage.Printable(b.Name), humanBytes(b.Size), b.Location, where[b.Location])
		}
	}
	if len(failed) > 0 {
		if o.json {
			writeJSON(a.stdout, map[string]any{"stored": storedJSON(stored), "failed": failed})
		}
		var why []string
		for _, c := range failed {
			why = append(why, c.Location+": "+c.Error)
		}
		return fmt.Errorf("stored %s in %s, but not in every location (%s): %w", first.Name, targets[0].Name(), strings.Join(why, "; "), failed[0].Err)
	}
	if o.json {
		return writeJSON(a.stdout, map[string]any{"stored": storedJSON(stored)})
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

func storedJSON(stored []storage.Backup) []backupJSON {
	out := []backupJSON{}
	for _, b := range stored {
		out = append(out, toBackupJSON(b, []string{b.Location}))
	}
	return out
}
