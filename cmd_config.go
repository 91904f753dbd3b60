package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/spf13/cobra"

	"drconsole/checklists"
	"drconsole/recovery"
	"drconsole/storage"
	"drconsole/ui"
)

type configOptions struct {
	conn connFlags
	key  keyFlags
	json bool
}

func newConfigCmd(a *app) *cobra.Command {
	o := &configOptions{}
	c := &cobra.Command{
		Use:   "config [flags]",
		Short: "show the effective configuration: server, database, locations, keys",
		Long: `Shows what drconsole would use, and where each setting came from, without contacting the
server or the locations: the same summary the console's start screen shows. Passwords and
passphrases are never shown, only whether one is given.`,
		Example: "  DB_HOST=db1 DB_NAME=orders drconsole config\n  drconsole config --json",
		Args:    noArgs(""),
		RunE: func(c *cobra.Command, _ []string) error {
			settings := a.settings(c.Context(), &o.conn, &o.key)
			if o.json {
				return writeJSON(a.stdout, settings)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			for _, s := range settings {
				mark := ""
				if s.Problem {
					mark = "  (!)"
				}
				for i, line := range strings.Split(s.Value, "\n") {
					name := s.Name
					if i > 0 {
						name = ""
					}
					fmt.Fprintf(tw, "%s\t%s%s\n", name, line, mark)
					mark = ""
				}
			}
			return tw.Flush()
		},
	}
	o.conn.add(c.Flags())
	o.key.add(c.Flags())
	c.Flags().BoolVar(&o.json, "json", false, "print the settings as JSON")
	return c
}

// settings is the effective configuration in words: what drconsole config prints and the
// console's start screen shows. It reads files and the environment, never the network.
func (a *app) settings(ctx context.Context, conn *connFlags, key *keyFlags) []ui.Setting {
	var out []ui.Setting
	add := func(name, value string, problem bool) {
		out = append(out, ui.Setting{Name: name, Value: value, Problem: problem})
	}
	if path, err := storage.ConfigPath(a.configPath, a.getenv); err != nil {
		add("config file", err.Error(), true)
	} else if path == "" {
		add("config file", "none: locations come from BACKUP_DIR, S3_BUCKET and S3_BUCKET_SECONDARY", false)
	} else {
		add("config file", path, false)
	}
	cn, err := conn.resolve(a)
	switch {
	case err != nil:
		add("server", err.Error(), true)
	default:
		pw := "no password (trust, peer or ~/.pgpass)"
		if cn.Password != "" {
			pw = "password given (not shown)"
		}
		add("server", fmt.Sprintf("%s as %s, from %s; %s", cn.Server(), cn.User, cn.Source, pw), false)
		if cn.Database == "" {
			add("database", "none named: a restore targets the database its backup was taken from; check needs one (DB_NAME, PGDATABASE or --db-url)", true)
		} else if err := recovery.ValidTarget(cn.Database); err != nil {
			add("database", err.Error(), true)
		} else {
			add("database", cn.Database+" (the restore target)", false)
		}
	}
	if locs, err := a.locations(ctx); err != nil {
		add("locations", err.Error(), true)
	} else {
		var lines []string
		for _, l := range locs {
			lines = append(lines, fmt.Sprintf("%s %s", l.Name(), l.String()))
		}
		add("locations", strings.Join(lines, "\n"), len(lines) == 0)
	}
	switch {
	case key.gpgKey == "":
		add("decryption key", "none given: encrypted backups need --gpg-key FILE (a passphrase alone opens gpg --symmetric ones)", false)
	default:
		if ents, err := recovery.ReadKeyFile(key.gpgKey); err != nil {
			add("decryption key", err.Error(), true)
		} else {
			add("decryption key", fmt.Sprintf("%s (%s)", key.gpgKey, keyNames(ents)), false)
		}
	}
	passphrase := "asked for when needed"
	switch {
	case key.passphraseFile != "":
		passphrase = "from " + key.passphraseFile
	case a.getenv("DRCONSOLE_PASSPHRASE") != "":
		passphrase = "from $DRCONSOLE_PASSPHRASE"
	}
	add("passphrase", passphrase, false)
	if signer := a.signerKeyPath(key.signerKey); signer == "" {
		add("signer keys", "none: who signed a backup is reported, not required (--signer-key)", false)
	} else if ents, err := recovery.ReadSignerFile(signer); err != nil {
		add("signer keys", err.Error(), true)
	} else {
		add("signer keys", fmt.Sprintf("%s (%s): backups none of them signed are refused", signer, keyNames(ents)), false)
	}
	if rb, _, err := loadRunbook(a); err != nil {
		add("runbook", err.Error(), true)
	} else {
		where := "embedded"
		if p := a.runbookFile(); p != "" {
			where = p
		}
		add("runbook", fmt.Sprintf("%s: %s, %d scenarios", where, rb.Title, len(rb.Scenarios)), false)
	}
	if v, problem := a.notifySetting(); v != "" {
		add("notify", v, problem)
	}
	state := checklists.StateDir(a.stateDir, a.getenv)
	open := 0
	if list, err := checklists.List(state); err == nil {
		for _, s := range list {
			if !s.Closed && s.Err == "" {
				open++
			}
		}
	}
	add("state", fmt.Sprintf("%s (%d open incidents)", state, open), false)
	if tools, err := recovery.FindTools(ctx, ""); err != nil {
		add("tools", err.Error(), true)
	} else {
		add("tools", fmt.Sprintf("%s (%s)", tools.Restore, tools.Version), false)
	}
	return out
}

// keyNames names the keys of a key file: key ID and primary identity.
func keyNames(ents openpgp.EntityList) string {
	var names []string
	for _, e := range ents {
		name := fmt.Sprintf("%016X", e.PrimaryKey.KeyId)
		if id := e.PrimaryIdentity(); id != nil {
			name += " " + id.Name
		}
		names = append(names, name)
	}
	return strings.Join(names, "; ")
}

// runbookFile is the runbook file in use: --runbook, else runbook: in the config file.
func (a *app) runbookFile() string {
	if a.runbookPath != "" {
		return a.runbookPath
	}
	if cfg, err := storage.LoadConfig(a.configPath, a.getenv); err == nil {
		return cfg.Runbook
	}
	return ""
}

// signerKeyPath is where the signer keys come from: --signer-key, $DRCONSOLE_SIGNER_KEY,
// else signer_key in the config file.
func (a *app) signerKeyPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if p := a.getenv("DRCONSOLE_SIGNER_KEY"); p != "" {
		return p
	}
	if cfg, err := storage.LoadConfig(a.configPath, a.getenv); err == nil {
		return cfg.SignerKey
	}
	return ""
}

// notifySetting lists the notify channels, where each sends (secrets replaced) and what it
// is for; problem is true when one of them cannot be used.
func (a *app) notifySetting() (string, bool) {
	chans, err := a.notifyChannels()
	var lines []string
	problem := err != nil
	for _, c := range chans {
		var uses []string
		if c.Alert != "" {
			uses = append(uses, "the runbook's "+c.Alert+" alert channel")
		}
		if c.Updates {
			uses = append(uses, "updates")
		}
		if len(c.Escalation) > 0 {
			uses = append(uses, "escalation: "+strings.Join(c.Escalation, ", "))
		}
		if c.Drills {
			uses = append(uses, "drills")
		}
		line := fmt.Sprintf("%s %s %s", c.Name, c.Type, c.Where)
		if c.From != "" {
			line += " (" + c.From + ")"
		}
		if len(uses) > 0 {
			line += "; " + strings.Join(uses, "; ")
		}
		if c.Err != nil {
			line += "; cannot send: " + c.Err.Error()
			problem = true
		}
		lines = append(lines, line)
	}
	if err != nil {
		lines = append(lines, oneLine(err))
	}
	if len(lines) == 0 {
		return "none: add a notify: list to the config file to send updates and pages", false
	}
	return strings.Join(lines, "\n"), problem
}
