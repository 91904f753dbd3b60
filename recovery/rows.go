package recovery

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"drconsole/recovery/pgarchive"
)

// TableRows is one table's rows: as counted in the archive's COPY data while the stream
// passed, and by count(*) in the restored copy and in the live database. -1: not known
// (not counted, the table is not there, or there is no live database to compare with).
type TableRows struct {
	Name     string `json:"name"` // schema.table
	Archive  int64  `json:"archive"`
	Restored int64  `json:"restored"`
	Live     int64  `json:"live"`

	schema, table string
}

// How a table's rows in the restored copy compare with the archive's (TableRows.State).
const (
	RowsMatch     = "ok"        // the copy has the archive's rows
	RowsDiffer    = "differs"   // it has more or fewer: the restore fails
	RowsMissing   = "missing"   // the archive has rows the copy does not show: no such table, or it could not be counted
	RowsUncounted = "uncounted" // the archive's rows could not be counted: nothing to compare
)

// State is how the table's rows in the restored copy compare with the archive's, as
// rowsCheck judges them. The live count is not judged: the live data may be the damaged
// copy, or newer than the backup.
func (t TableRows) State() string {
	switch {
	case t.Archive < 0:
		return RowsUncounted
	case t.Restored < 0 && t.Archive == 0:
		return RowsMatch // an empty table the copy does without
	case t.Restored < 0:
		return RowsMissing
	case t.Restored != t.Archive:
		return RowsDiffer
	}
	return RowsMatch
}

// rowLedger is one restore's row accounting. The load fills in Archive, the checks
// (rowsCheck) Restored and Live, in place: Restored.Rows is the same slice.
type rowLedger struct {
	rows []TableRows
}

// tableRows turns row counts by TABLE DATA entry into rows by table, in the archive's
// order. The table is the one the COPY fills: with pg_dump --load-via-partition-root the
// partitions' rows all go into (and are counted in) their root.
func tableRows(toc *pgarchive.Archive, counts map[int]int64) []TableRows {
	var out []TableRows
	at := map[string]int{}
	for _, e := range toc.Entries {
		if e.Desc != "TABLE DATA" {
			continue
		}
		schema, table := e.Namespace, e.Tag
		if c, err := pgarchive.ParseCopy(e.CopyStmt); err == nil {
			schema, table = c.Schema, c.Table
		}
		n, ok := counts[e.ID]
		if !ok {
			n = -1
		}
		key := schema + "\x00" + table
		i, seen := at[key]
		if !seen {
			at[key] = len(out)
			name := table
			if schema != "" {
				name = schema + "." + table
			}
			out = append(out, TableRows{Name: name, Archive: n, Restored: -1, Live: -1, schema: schema, table: table})
			continue
		}
		if out[i].Archive < 0 || n < 0 {
			out[i].Archive = -1
		} else {
			out[i].Archive += n
		}
	}
	return out
}

// rowsCheck proves that every row of every table in the archive arrived: count(*) of each
// in the restored database must be what the archive held. A table that lost or gained
// rows fails the restore. The live database's counts (live may be nil) are recorded, not
// judged: the live data may be the damaged copy.
func rowsCheck(ctx context.Context, restored, live *pgx.Conn, arch *Archive) []CheckResult {
	if arch == nil || arch.ledger == nil {
		return nil
	}
	rows := arch.ledger.rows
	errs := countAll(ctx, restored, rows, func(t *TableRows, n int64) { t.Restored = n }, min(4, runtime.NumCPU()))
	if live != nil {
		// One connection: the live database is production, loaded enough.
		countAll(ctx, live, rows, func(t *TableRows, n int64) { t.Live = n }, 1)
	}
	var total int64
	var wrong, uncounted []string
	for i := range rows {
		t := &rows[i]
		err := errs[i]
		// State is what every screen shows for the table: judge by it, so they agree.
		switch state := t.State(); {
		case state == RowsUncounted:
			uncounted = append(uncounted, t.Name)
		case err != nil:
			wrong = append(wrong, fmt.Sprintf("%s: %d rows in the archive, cannot count them in the copy (%s)", t.Name, t.Archive, pgMessage(err)))
		case state == RowsMissing:
			wrong = append(wrong, fmt.Sprintf("%s: %d rows in the archive, no such table in the copy", t.Name, t.Archive))
		case state == RowsDiffer:
			wrong = append(wrong, fmt.Sprintf("%s: %d rows in the archive, %d restored", t.Name, t.Archive, t.Restored))
		default:
			total += t.Archive
		}
	}
	r := CheckResult{Name: "rows of every table", Blocking: true,
		Expected: fmt.Sprintf("%d tables as in the archive", len(rows)-len(uncounted)),
		Actual:   fmt.Sprintf("%d tables, %d rows, as in the archive", len(rows)-len(uncounted)-len(wrong), total)}
	switch {
	case len(wrong) > 0:
		r.Status, r.Detail = CheckFail, listSome(wrong, 5)
	case len(uncounted) > 0:
		r.Status, r.Detail = CheckWarn, fmt.Sprintf("not counted (data the archive reader cannot decompress, or not COPY data): %s", listSome(uncounted, 5))
	default:
		r.Status = CheckPass
	}
	return []CheckResult{r}
}

// countAll counts the rows of every table over up to jobs connections to conn's database
// (conn and more like it), setting each count with set (-1: no such table). Row security
// is off: it would hide rows from a role it applies to, and counting such a table fails
// instead of coming out short.
func countAll(ctx context.Context, conn *pgx.Conn, rows []TableRows, set func(*TableRows, int64), jobs int) []error {
	errs := make([]error, len(rows))
	next := make(chan int)
	var wg sync.WaitGroup
	count := func(c *pgx.Conn) {
		defer wg.Done()
		if _, err := c.Exec(ctx, "SET row_security = off"); err == nil {
			defer c.Exec(context.WithoutCancel(ctx), "RESET row_security")
		}
		for i := range next {
			n, err := countRows(ctx, c, rows[i].schema, rows[i].table)
			if err != nil {
				n = -1 // not known: a count that failed is not 0 rows
			}
			errs[i] = err
			set(&rows[i], n)
		}
	}
	wg.Add(1)
	go count(conn)
	for j := 1; j < min(jobs, len(rows)); j++ {
		c, err := pgx.ConnectConfig(ctx, conn.Config().Copy())
		if err != nil {
			break // fewer connections, the same counts
		}
		defer c.Close(context.WithoutCancel(ctx))
		wg.Add(1)
		go count(c)
	}
	for i := range rows {
		next <- i
	}
	close(next)
	wg.Wait()
	return errs
}

// countRows is count(*) of a table: its own rows only (ONLY), or for a partitioned table
// all its partitions'. -1 when there is no such table.
func countRows(ctx context.Context, conn *pgx.Conn, schema, table string) (int64, error) {
	name := pgx.Identifier{table}.Sanitize()
	if schema != "" {
		name = pgx.Identifier{schema, table}.Sanitize()
	}
	var kind *string
	if err := conn.QueryRow(ctx, `SELECT (SELECT relkind::text FROM pg_catalog.pg_class WHERE oid = pg_catalog.to_regclass($1))`, name).Scan(&kind); err != nil {
		return -1, err
	}
	if kind == nil {
		return -1, nil
	}
	only := "ONLY "
	if *kind == "p" {
		only = ""
	}
	var n int64
	err := conn.QueryRow(ctx, `SELECT count(*) FROM `+only+name).Scan(&n)
	return n, err
}

func listSome(items []string, n int) string {
	s := strings.Join(items[:min(n, len(items))], "; ")
	if len(items) > n {
		s += fmt.Sprintf("; and %d more", len(items)-n)
	}
	return s
}
