package recovery

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// CheckStatus is how a check came out.
type CheckStatus string

const (
	CheckPass CheckStatus = "pass"
	CheckFail CheckStatus = "fail"
	CheckWarn CheckStatus = "warn" // worth a look; never blocks the swap
	CheckInfo CheckStatus = "info" // a figure for the record
	CheckSkip CheckStatus = "skip" // not applicable here (e.g. the table does not exist)
)

// Check is one integrity check, as data. Value queries return one value; Rows queries
// are listed. Counts are compared with the live database when one is reachable. The
// application's checks come from the runbook (Options.Checks); GenericChecks are
// drconsole's own, for any database.
type Check struct {
	Name     string
	SQL      string
	Table    string // the check is skipped when this table does not exist
	Rows     bool   // list the rows instead of reading one value
	Compare  bool   // compare with the same query on the live database
	Database bool   // the query takes the database name as $1
	Expect   string // the value that passes; anything else is a warning (Warning says why)
	Warning  string
}

// GenericChecks are the checks that hold for any database: its size, its statistics and
// whether WAL archiving (the RPO) works on the server.
var GenericChecks = []Check{
	{Name: "database size", SQL: `SELECT pg_size_pretty(pg_database_size($1))`, Database: true, Compare: true},
	{Name: "pg_stat_database", SQL: `SELECT format('backends=%s commits=%s rollbacks=%s conflicts=%s deadlocks=%s', numbackends, xact_commit, xact_rollback, conflicts, deadlocks) FROM pg_stat_database WHERE datname = $1`, Database: true},
	// Cluster-wide: whether WAL archiving (the runbook's RPO) is working on this server.
	{Name: "WAL archiving (pg_stat_archiver)", SQL: `SELECT format('archived=%s failed=%s last=%s', archived_count, failed_count, coalesce(last_archived_wal || ' at ' || last_archived_time, 'none')) FROM pg_stat_archiver`},
}

// CheckResult is one check's outcome. Blocking results are the only ones that can stop a swap.
type CheckResult struct {
	Name     string      `json:"name"`
	Status   CheckStatus `json:"status"`
	Expected string      `json:"expected,omitempty"` // the live database's value, when compared
	Actual   string      `json:"actual,omitempty"`
	Detail   string      `json:"detail,omitempty"`
	Blocking bool        `json:"blocking,omitempty"`
	// Confirm: a blocking failure the operator may overrule, knowingly, for the swap
	// (tables that live has and the restored copy lacks: expected if they were created
	// after the backup, fatal if the backup is of something else).
	Confirm bool `json:"needs_confirmation,omitempty"`
}

// Failed returns the blocking checks that failed and that no confirmation overrules.
func Failed(results []CheckResult) []CheckResult {
	var out []CheckResult
	for _, r := range results {
		if r.Blocking && r.Status == CheckFail && !r.Confirm {
			out = append(out, r)
		}
	}
	return out
}

// Unconfirmed returns the failed checks that block the swap until the operator confirms.
func Unconfirmed(results []CheckResult) []CheckResult {
	var out []CheckResult
	for _, r := range results {
		if r.Blocking && r.Status == CheckFail && r.Confirm {
			out = append(out, r)
		}
	}
	return out
}

// RunChecks runs the application's checks (from the runbook) and the generic ones in
// database, comparing counts with compareWith (the live database) when it is not empty
// and reachable. It never fails: an error becomes a result.
func RunChecks(ctx context.Context, c *Conn, database, compareWith string, app []Check) []CheckResult {
	conn, err := c.Connect(ctx, database)
	if err != nil {
		return []CheckResult{{Name: "database reachable", Status: CheckFail, Blocking: true, Detail: err.Error()}}
	}
	defer conn.Close(context.Background())
	var live *pgx.Conn
	if compareWith != "" && compareWith != database {
		if live, err = c.Connect(ctx, compareWith); err == nil {
			defer live.Close(context.Background())
		} else {
			live = nil
		}
	}
	return runbookChecks(ctx, conn, live, database, compareWith, app)
}

// checkRestored runs, over one connection, the checks that prove the restore went
// right and then the runbook's checks. compareWith is the live database the copy would
// replace ("" when it replaces none). The copy is read as restored (the sandbox role),
// the live database as admin.
func checkRestored(ctx context.Context, restored, admin *Conn, database, compareWith string, arch *Archive, app []Check) []CheckResult {
	conn, err := restored.Connect(ctx, database)
	if err != nil {
		return []CheckResult{{Name: "restored database reachable", Status: CheckFail, Blocking: true, Detail: err.Error()}}
	}
	defer conn.Close(context.Background())
	out := restoreChecks(ctx, conn, arch)
	var live *pgx.Conn
	if compareWith != "" && compareWith != database {
		live, err = admin.Connect(ctx, compareWith)
		if err != nil {
			live = nil
			out = append(out, CheckResult{Name: "tables of " + compareWith + " in the copy", Status: CheckFail, Blocking: true, Confirm: true,
				Detail: fmt.Sprintf("%s cannot be read to compare its tables with the copy: %v", compareWith, err)})
		} else {
			defer live.Close(context.Background())
			out = append(out, liveTablesCheck(ctx, conn, live, compareWith))
		}
	}
	out = append(out, rowsCheck(ctx, conn, live, arch)...)
	return append(out, runbookChecks(ctx, conn, live, database, compareWith, app)...)
}

// userTables lists a database's tables as schema.name.
const userTables = `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE c.relkind IN ('r','p') AND n.nspname NOT IN ('pg_catalog','information_schema')
	  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1`

// liveTablesCheck blocks the swap, until the operator confirms, when the live database
// has tables the restored copy lacks: a backup of another database, or of a much older
// schema, would otherwise replace production without a word.
func liveTablesCheck(ctx context.Context, restored, live *pgx.Conn, liveName string) CheckResult {
	r := CheckResult{Name: "tables of " + liveName + " in the copy", Blocking: true, Confirm: true}
	list := func(conn *pgx.Conn) ([]string, error) {
		rows, err := conn.Query(ctx, userTables)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, pgx.RowTo[string])
	}
	liveTables, err := list(live)
	if err != nil {
		r.Status, r.Detail = CheckFail, fmt.Sprintf("listing %s's tables: %v", liveName, pgMessage(err))
		return r
	}
	copyTables, err := list(restored)
	if err != nil {
		r.Status, r.Detail = CheckFail, fmt.Sprintf("listing the copy's tables: %v", pgMessage(err))
		return r
	}
	have := map[string]bool{}
	for _, t := range copyTables {
		have[t] = true
	}
	var missing []string
	for _, t := range liveTables {
		if !have[t] {
			missing = append(missing, t)
		}
	}
	r.Expected, r.Actual = fmt.Sprint(len(liveTables)), fmt.Sprint(len(liveTables)-len(missing))
	if len(missing) == 0 {
		r.Status = CheckPass
		return r
	}
	shown := missing[:min(len(missing), 8)]
	r.Status = CheckFail
	r.Detail = fmt.Sprintf("%d of %s's tables are not in the restored copy: %s", len(missing), liveName, strings.Join(shown, ", "))
	if len(missing) > len(shown) {
		r.Detail += fmt.Sprintf(" and %d more", len(missing)-len(shown))
	}
	return r
}

func runbookChecks(ctx context.Context, conn, live *pgx.Conn, database, compareWith string, app []Check) []CheckResult {
	var out []CheckResult
	gated, gatedApplied := 0, 0
	for _, chk := range app {
		r := runCheck(ctx, conn, live, database, compareWith, chk)
		if chk.Table != "" {
			gated++
			if r.Status != CheckSkip {
				gatedApplied++
			}
		}
		out = append(out, r)
	}
	// Checks that find none of their tables are another schema's: they verify nothing here,
	// and saying so beats a clean-looking list (or a warning about a table this
	// application never had).
	switch {
	case len(app) == 0:
		out = append(out, CheckResult{Name: "application checks", Status: CheckInfo, Detail: "the runbook defines none (checks: in the runbook file)"})
	case gated > 0 && gatedApplied == 0:
		for i := range out {
			out[i].Status, out[i].Detail, out[i].Actual, out[i].Expected = CheckSkip, "not this database's schema", "", ""
		}
		out = append(out, CheckResult{Name: "application checks", Status: CheckWarn,
			Detail: fmt.Sprintf("none of the runbook's %d checks applies: this database has none of the tables they read, so nothing application-specific was verified (give the runbook this application's checks)", len(app))})
	}
	for _, chk := range GenericChecks {
		out = append(out, runCheck(ctx, conn, live, database, compareWith, chk))
	}
	return out
}

func runCheck(ctx context.Context, conn, live *pgx.Conn, database, compareWith string, chk Check) CheckResult {
	r := CheckResult{Name: chk.Name}
	if chk.Table != "" {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, `"`+chk.Table+`"`).Scan(&exists); err != nil || !exists {
			r.Status, r.Detail = CheckSkip, fmt.Sprintf("no %q table in this database", chk.Table)
			return r
		}
	}
	if chk.Rows {
		rows, err := listRows(ctx, conn, chk.SQL)
		if err != nil {
			r.Status, r.Detail = CheckWarn, err.Error()
			return r
		}
		r.Status, r.Actual = CheckInfo, fmt.Sprintf("%d rows", len(rows))
		r.Detail = strings.Join(rows, "\n")
		return r
	}
	actual, err := value(ctx, conn, chk, database)
	if err != nil {
		r.Status, r.Detail = CheckWarn, err.Error()
		return r
	}
	r.Actual, r.Status = actual, CheckInfo
	if chk.Expect != "" {
		r.Status = CheckPass
		if actual != chk.Expect {
			r.Status, r.Detail = CheckWarn, chk.Warning
			if r.Detail == "" {
				r.Detail = fmt.Sprintf("expected %s", chk.Expect)
			}
		}
	}
	if chk.Compare && live != nil {
		expected, err := value(ctx, live, chk, compareWith)
		if err == nil {
			r.Expected = expected
			if chk.Database {
				r.Detail = "live database " + compareWith + ": " + expected
			} else if expected == actual {
				r.Status = CheckPass
			} else {
				r.Status, r.Detail = CheckWarn, fmt.Sprintf("live database %s has %s; the backup has %s (expected when the live data is the damaged copy)", compareWith, expected, actual)
			}
		}
	}
	return r
}

func value(ctx context.Context, conn *pgx.Conn, chk Check, database string) (string, error) {
	var args []any
	if chk.Database {
		args = append(args, database)
	}
	var v any
	if err := conn.QueryRow(ctx, chk.SQL, args...).Scan(&v); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return "", nil
		}
		return "", err
	}
	return fmt.Sprint(v), nil
}

func listRows(ctx context.Context, conn *pgx.Conn, sql string) ([]string, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	fields := rows.FieldDescriptions()
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			s := fmt.Sprint(v)
			if len(s) > 40 {
				s = s[:40] + "…"
			}
			parts[i] = fields[i].Name + "=" + s
		}
		out = append(out, strings.Join(parts, " "))
	}
	return out, rows.Err()
}

// restoreChecks are the checks that prove the restore itself went wrong, and so block
// the swap: the scratch database holds none of the archive's tables (or, for plain SQL,
// no tables at all).
func restoreChecks(ctx context.Context, conn *pgx.Conn, arch *Archive) []CheckResult {
	out := []CheckResult{{Name: "restored database reachable", Status: CheckPass, Blocking: true}}
	var tables int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r','p') AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg_toast%'`).Scan(&tables); err != nil {
		return append(out, CheckResult{Name: "tables restored", Status: CheckFail, Blocking: true, Detail: err.Error()})
	}
	r := CheckResult{Name: "tables restored", Blocking: true, Actual: fmt.Sprint(tables)}
	if arch == nil {
		r.Status = CheckPass
		if tables == 0 {
			r.Status, r.Detail = CheckFail, "the restored database has no tables"
		}
		return append(out, r)
	}
	r.Expected = fmt.Sprintf("%d with data", len(arch.Tables))
	schemas, names := make([]string, len(arch.Tables)), make([]string, len(arch.Tables))
	for i, t := range arch.Tables {
		schemas[i], names[i] = t.Schema, t.Name
	}
	// One round trip for all of them, however many tables the archive has.
	rows, err := conn.Query(ctx, `SELECT CASE WHEN s = '' THEN n ELSE s || '.' || n END
		FROM unnest($1::text[], $2::text[]) AS t(s, n)
		WHERE to_regclass(CASE WHEN s = '' THEN quote_ident(n) ELSE quote_ident(s) || '.' || quote_ident(n) END) IS NULL`, schemas, names)
	if err != nil {
		return append(out, CheckResult{Name: "tables restored", Status: CheckFail, Blocking: true, Detail: err.Error()})
	}
	missingNames, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return append(out, CheckResult{Name: "tables restored", Status: CheckFail, Blocking: true, Detail: err.Error()})
	}
	missing := len(missingNames)
	names = missingNames[:min(5, missing)]
	switch {
	case len(arch.Tables) > 0 && missing == len(arch.Tables):
		r.Status, r.Detail = CheckFail, "none of the archive's tables exist in the restored database"
	case missing > 0:
		r.Status, r.Detail = CheckWarn, fmt.Sprintf("%d of the archive's tables are missing: %s", missing, strings.Join(names, ", "))
	default:
		r.Status = CheckPass
	}
	return append(out, r)
}
