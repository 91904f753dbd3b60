package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"drconsole/incident"
	"drconsole/recovery"
	"drconsole/storage"
)

type verifyResult struct {
	Backup      storage.Backup         `json:"backup"`
	Location    string                 `json:"location"`
	Layers      []storage.Layer        `json:"layers"`
	Signature   signatureJSON          `json:"signature"`
	Format      storage.Format         `json:"format"`
	Archive     *archiveJSON           `json:"archive,omitempty"`
	BytesRead   int64                  `json:"bytes_read"`
	DumpBytes   int64                  `json:"dump_bytes"`
	DataBlocks  int                    `json:"data_blocks"`
	Complete    bool                   `json:"complete"`
	Seconds     float64                `json:"seconds"`
	RestoreTest *restoreResult         `json:"restore_test,omitempty"`
	Checks      []recovery.CheckResult `json:"checks,omitempty"`
	Error       string                 `json:"error,omitempty"`
}

// signatureJSON is who signed a backup, for scripts: trusted is true only for one of the
// --signer-key keys, and then the signature was verified (verify reads to the end).
type signatureJSON struct {
	Signed  bool   `json:"signed"`
	KeyID   string `json:"key_id,omitempty"`
	Signer  string `json:"signer,omitempty"`
	Trusted bool   `json:"trusted"`
}

type archiveJSON struct {
	Version       string         `json:"archive_version"`
	DumpVersion   string         `json:"pg_dump_version"`
	ServerVersion string         `json:"server_version"`
	Database      string         `json:"database"`
	Created       string         `json:"created"`
	Compression   string         `json:"compression"`
	Tables        []archiveTable `json:"tables"`
	Owners        []string       `json:"owners"`
}

// archiveTable is a table with data in the archive and its rows there, as counted while
// the stream passed; -1 when they could not be counted.
type archiveTable struct {
	Name string `json:"name"`
	Rows int64  `json:"rows"`
}

// archiveTables are the archive's tables with their rows: by the table the COPY fills
// (with --load-via-partition-root, the partitions' rows are their root's), or, when the
// rows could not be counted, the tables with data, each -1.
func archiveTables(c *recovery.Contents) []archiveTable {
	out := []archiveTable{}
	if c.Rows != nil {
		for _, t := range c.Rows {
			out = append(out, archiveTable{Name: t.Name, Rows: t.Archive})
		}
		return out
	}
	for _, t := range c.Archive.Tables {
		out = append(out, archiveTable{Name: t.QualifiedName(), Rows: -1})
	}
	return out
}

type verifyOptions struct {
	conn        connFlags
	key         keyFlags
	restoreTest bool
	load        loadFlags
	json        bool
}

func newVerifyCmd(a *app) *cobra.Command {
	o := &verifyOptions{}
	c := &cobra.Command{
		Use:   "verify [flags] BACKUP",
		Short: "read a whole backup to prove it is intact and signed; optionally test-restore it",
		Long: `Reads the whole of BACKUP: decryption with its integrity check (MDC) and signature,
decompression with its CRC, and every data block of the archive. With --signer-key, a backup
none of those keys signed fails (exit 9). --restore-test also restores it into a throwaway
database on the target server, runs the checks and drops it.`,
		Example: "  drconsole verify --gpg-key ops-secret.asc --signer-key job-public.asc latest\n  drconsole verify --restore-test --json latest",
		Args:    oneBackupArg,
		RunE:    func(c *cobra.Command, args []string) error { return runVerify(c.Context(), a, o, args[0]) },
	}
	f := c.Flags()
	o.conn.add(f)
	o.key.add(f)
	f.BoolVar(&o.restoreTest, "restore-test", false, "also restore into a throwaway database on the target server, run the checks, and drop it")
	f.BoolVar(&o.json, "json", false, "print the result as JSON on stdout")
	o.load.add(f) // for --restore-test
	return c
}

func runVerify(ctx context.Context, a *app, o *verifyOptions, backup string) error {
	keys, err := o.key.keys(a)
	if err != nil {
		return err
	}
	var database string
	if cn, err := o.conn.resolve(a); err == nil {
		database = cn.Database
	}
	src, _, err := a.oneBackup(ctx, backup, a.backupPrefixes(database))
	if err != nil {
		return err
	}
	out := verifyResult{Backup: src.Backup, Location: src.Location.Name()}
	err = verify(ctx, a, src, keys, o, &out)
	if o.json {
		if err != nil {
			out.Error = oneLine(err)
		}
		writeJSON(a.stdout, out)
	}
	return err
}

func verify(ctx context.Context, a *app, src recovery.Source, keys *recovery.Keys, o *verifyOptions, out *verifyResult) error {
	quiet := o.json
	got, err := recovery.Verify(ctx, src, keys, newProgress(a, "verify", quiet))
	if err != nil {
		return err
	}
	out.Layers, out.Format, out.BytesRead, out.DumpBytes, out.DataBlocks, out.Complete, out.Seconds =
		got.Layers, got.Format, got.Read, got.Dump, got.DataBlocks, got.Complete, got.Duration.Seconds()
	sig := got.Signature
	out.Signature = signatureJSON{Signed: sig.Signed, KeyID: sig.KeyIDHex, Signer: sig.Signer, Trusted: sig.Trusted}
	if ar := got.Archive; ar != nil {
		j := &archiveJSON{Version: ar.Version, DumpVersion: ar.DumpVersion, ServerVersion: ar.ServerVersion, Database: ar.Database,
			Created: ar.Created.Format(time.RFC3339), Compression: ar.Compression, Tables: archiveTables(got), Owners: ar.Owners}
		out.Archive = j
	}
	if !quiet {
		fmt.Fprintf(a.stdout, "backup    %s (%s, %s)\n", storage.Printable(src.Backup.Name), src.Location.Name(), humanBytes(got.Read))
		fmt.Fprintf(a.stdout, "layers    %v\n", got.Layers)
		switch {
		case sig.Trusted:
			fmt.Fprintf(a.stdout, "signature %s, a trusted signer: verified\n", sig)
		case len(keys.Signers) > 0:
			fmt.Fprintf(a.stdout, "signature %s: NOT by a trusted signer\n", sig)
		case sig.Signed:
			fmt.Fprintf(a.stdout, "signature %s: not checked (no --signer-key)\n", sig)
		default:
			fmt.Fprintf(a.stdout, "signature none: nothing proves this backup was made by your backup job\n")
		}
		if ar := got.Archive; ar != nil {
			fmt.Fprintf(a.stdout, "archive   version %s, written by pg_dump %s from server %s, database %q, %s\n", ar.Version, ar.DumpVersion, ar.ServerVersion, ar.Database, ar.Created.Format("2006-01-02 15:04:05"))
			printArchiveTables(a, archiveTables(got))
			fmt.Fprintf(a.stdout, "data      %d blocks, %s of dump, all read and decompressed\n", got.DataBlocks, humanBytes(got.Dump))
		} else {
			fmt.Fprintf(a.stdout, "sql       %s of plain SQL, read to the end\n", humanBytes(got.Dump))
		}
		fmt.Fprintf(a.stdout, "result    OK: complete, every integrity check passed (%s)\n", shortDuration(got.Duration))
	}
	if len(keys.Signers) > 0 && !sig.Trusted && !o.load.allowUnsigned {
		return fmt.Errorf("backup %q: %w", storage.Printable(src.Backup.Name), sig.Require())
	}
	if !o.restoreTest {
		return nil
	}
	cn, err := o.conn.resolve(a)
	if err != nil {
		return err
	}
	base := "drconsole_verify"
	if got.Archive != nil && got.Archive.Database != "" {
		base = got.Archive.Database + "_verify"
	}
	testDB := base + "_" + time.Now().UTC().Format("20060102_150405")
	if recovery.ValidTarget(testDB) != nil { // the archive's name is the backup's word, not ours
		testDB = "drconsole_verify_" + time.Now().UTC().Format("20060102_150405")
	}
	rb, _, err := loadRunbook(a)
	if err != nil {
		return err
	}
	plan, err := recovery.Prepare(ctx, src, o.load.options(recovery.Options{Conn: cn, Keys: keys, TestDB: testDB, Checks: incident.Checks(rb)}))
	if err != nil {
		return err
	}
	r, err := plan.Restore(ctx, newProgress(a, "restore-test", quiet))
	rt := &restoreResult{Backup: src.Backup, Location: src.Location.Name(), Mode: plan.Mode, Target: plan.Target, Scratch: plan.Scratch, Server: plan.Server}
	out.RestoreTest = rt
	if r != nil {
		rt.Checks, rt.Read, rt.Dump, rt.Tables, rt.Seconds = r.Checks, r.Read, r.Dump, r.Tables, r.Duration.Seconds()
		rt.Rows = rowsJSON(r.Rows)
		out.Checks = r.Checks
		if !quiet && len(r.Checks) > 0 {
			printChecks(a, r.Checks)
		}
		if !quiet {
			printRows(a, r.Rows)
		}
	}
	if err != nil {
		return err
	}
	if derr := r.Drop(context.Background()); derr != nil {
		return fmt.Errorf("restore test passed but the throwaway database %s could not be dropped: %v", testDB, derr)
	}
	if !quiet {
		fmt.Fprintf(a.stdout, "restore   OK: restored into %s on %s, checked, dropped\n", testDB, plan.Server)
	}
	return nil
}

// printArchiveTables lists every table with its rows in the archive, one a line, the
// counts aligned on the right so that their sizes read at a glance.
func printArchiveTables(a *app, tables []archiveTable) {
	var total int64
	nameW, rowsW, counted := 0, 1, true
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = storage.Printable(t.Name) // the backup's words: no escape sequences reach the terminal
		nameW = max(nameW, utf8.RuneCountInString(names[i]))
		rowsW = max(rowsW, len(rowCount(t.Rows)))
		if t.Rows < 0 {
			counted = false
		}
		total += max(t.Rows, 0)
	}
	switch {
	case len(tables) == 0:
		fmt.Fprintf(a.stdout, "tables    none with data\n")
		return
	case counted:
		fmt.Fprintf(a.stdout, "tables    %d with data, %d rows:\n", len(tables), total)
	default:
		fmt.Fprintf(a.stdout, "tables    %d with data (?: rows not counted):\n", len(tables))
	}
	nameW = min(nameW, 60) // a longer name pushes its own count along, not every line's
	for i, t := range tables {
		pad := max(nameW-utf8.RuneCountInString(names[i]), 0)
		fmt.Fprintf(a.stdout, "          %s%s  %*s\n", names[i], strings.Repeat(" ", pad), rowsW, rowCount(t.Rows))
	}
}

// rowCount writes a row count; ? when it is not known.
func rowCount(n int64) string {
	if n < 0 {
		return "?"
	}
	return strconv.FormatInt(n, 10)
}
