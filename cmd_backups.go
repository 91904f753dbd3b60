package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"drconsole/recovery"
	"drconsole/storage"
	"drconsole/wal"
)

func newBackupsCmd(a *app) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "backups [flags]",
		Short: "list every backup in every configured location, newest first",
		Example: `  drconsole backups
  S3_BUCKET=spywatcher-backups drconsole backups --json | jq '.backups[0]'`,
		Args: noArgs(""),
		RunE: func(c *cobra.Command, _ []string) error { return runBackups(c.Context(), a, asJSON) },
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print an object with backups and locations on stdout")
	return c
}

// backupJSON is one backup in `backups --json` and `backup --json`.
type backupJSON struct {
	Name        string              `json:"name"`
	Prefix      string              `json:"prefix,omitempty"` // the application's prefix in the name
	Location    string              `json:"location"`
	Locations   []string            `json:"locations"` // every location holding a copy of this name
	Key         string              `json:"key"`
	Time        string              `json:"time,omitempty"` // RFC 3339, from the name
	Modified    string              `json:"modified"`
	Size        int64               `json:"size"`
	Kind        storage.Kind        `json:"kind"`
	Format      storage.Format      `json:"format"`
	Compression storage.Compression `json:"compression"`
	Encrypted   bool                `json:"encrypted"`
}

func runBackups(ctx context.Context, a *app, asJSON bool) error {
	locs, err := a.locations(ctx)
	if err != nil {
		return err
	}
	cat := storage.ListAll(ctx, locs)
	var database string
	if cn, err := recovery.ResolveConn("", a.getenv); err == nil {
		database = cn.Database
	}
	prefixes := a.backupPrefixes(database)
	// No location could be read: scripts must not mistake that for "no backups".
	unreachable := len(cat.Locations) > 0
	var why []string
	for _, l := range cat.Locations {
		if l.Reachable {
			unreachable = false
		} else {
			why = append(why, l.Name+": "+l.Err)
		}
	}
	var listErr error
	if unreachable {
		listErr = fmt.Errorf("%w: no location could be read (%s)", storage.ErrUnreachable, strings.Join(why, "; "))
	}
	where := map[string][]string{}
	for _, e := range cat.Entries {
		where[e.Name] = e.Locations
	}
	if asJSON {
		out := struct {
			Backups   []backupJSON             `json:"backups"`
			Locations []storage.LocationStatus `json:"locations"`
			PITR      []wal.Reach              `json:"point_in_time"`
		}{Backups: []backupJSON{}, Locations: cat.Locations, PITR: wal.Reaches(ctx, locs)}
		for _, b := range cat.Backups {
			out.Backups = append(out.Backups, toBackupJSON(b, where[b.Name]))
		}
		if err := writeJSON(a.stdout, out); err != nil {
			return err
		}
		return listErr
	}
	for _, l := range cat.Locations {
		state := fmt.Sprintf("%d backups", l.Backups)
		if !l.Reachable {
			state = "UNREACHABLE: " + l.Err
		}
		fmt.Fprintf(a.stdout, "location %-10s %-45s %s\n", l.Name, l.Where, state)
		if l.LatestWAL != "" {
			fmt.Fprintf(a.stdout, "  newest WAL segment %s at %s (%s ago): the freshest recoverable point\n", l.LatestWAL, l.WALTime.Format(time.RFC3339), shortDuration(time.Since(l.WALTime)))
		}
	}
	printReaches(a, wal.Reaches(ctx, locs))
	if len(cat.Backups) == 0 {
		fmt.Fprintln(a.stdout, "\nno backups found")
		return listErr
	}
	fmt.Fprintln(a.stdout)
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME (UTC)\tAGE\tSIZE\tLOCATION\tCOPIES\tENC\tNAME")
	for _, b := range cat.Backups {
		t, age := "-", "-"
		if st := b.SortTime(); !st.IsZero() {
			t, age = st.Format("2006-01-02 15:04"), ageOf(time.Since(st))
		}
		copies := strings.Join(where[b.Name], "+")
		if len(where[b.Name]) == 1 && len(cat.Locations) > 1 {
			copies += " only"
		}
		enc := "no"
		if b.Encrypted {
			enc = "gpg"
		}
		name := storage.Printable(b.Name)
		switch {
		case !b.Recognized():
			name += "  (unknown name)"
		case !b.Of(prefixes):
			name += "  (another application's)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t, age, humanBytes(b.Size), b.Location, copies, enc, name)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return listErr
}

// printReaches says, per location, what point-in-time recovery can reach, and why not
// where it cannot.
func printReaches(a *app, reaches []wal.Reach) {
	for _, r := range reaches {
		switch {
		case r.Error != "" && len(r.Bases) == 0:
			fmt.Fprintf(a.stdout, "  point in time: %s: base backups cannot be listed: %s\n", r.Location, r.Error)
		case len(r.Bases) == 0:
			// Dumps only: say plainly what PITR needs, once.
		case r.To.IsZero():
			fmt.Fprintf(a.stdout, "  point in time: %s: %d base backup(s), newest %s, but no WAL archived after it%s\n", r.Location, len(r.Bases), r.Bases[0].Name, errSuffix(r.Error))
		default:
			fmt.Fprintf(a.stdout, "  point in time: %s: any moment from %s to %s (%d base backups, newest %s; restore --to-time checks the WAL between)\n",
				r.Location, r.From.Format("2006-01-02 15:04:05"), r.To.Format("2006-01-02 15:04:05 UTC"), len(r.Bases), r.Bases[0].Name)
		}
	}
	for _, r := range reaches {
		if len(r.Bases) > 0 {
			return
		}
	}
	fmt.Fprintln(a.stdout, "  point in time: not available: no location holds a base backup (archive WAL with drconsole wal-push, see wal-status; then drconsole basebackup)")
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " (" + e + ")"
}

func ageOf(d time.Duration) string {
	switch {
	case d < 0:
		return "future"
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func toBackupJSON(b storage.Backup, locations []string) backupJSON {
	j := backupJSON{Name: b.Name, Prefix: b.Prefix, Location: b.Location, Locations: locations, Key: b.Key, Size: b.Size,
		Modified: b.Modified.Format(time.RFC3339), Kind: b.Kind, Format: b.Format, Compression: b.Compression, Encrypted: b.Encrypted}
	if !b.Time.IsZero() {
		j.Time = b.Time.Format(time.RFC3339)
	}
	return j
}
