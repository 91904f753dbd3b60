package parallel

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"drconsole/internal/pgtest"
	"drconsole/recovery/pgarchive"
)

// engineFor is a Config restoring into db on c: pg_restore is run as recovery runs it,
// reading the TOC on stdin and the list on a pipe.
func engineFor(t *testing.T, c *pgtest.Cluster, db string) Config {
	return Config{
		Connect: func(ctx context.Context) (*pgconn.PgConn, error) {
			return pgconn.Connect(ctx, strings.Replace(c.URL(db), "sslmode=disable", "sslmode=disable&application_name=enginetest", 1))
		},
		PgRestore: func(ctx context.Context, phase Phase, archive []byte, list []int) error {
			r, w, err := os.Pipe()
			if err != nil {
				return err
			}
			cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "pg_restore"), "--exit-on-error", "--use-list", "/dev/fd/3", "-d", db)
			cmd.Env = append(os.Environ(), c.Env(db)...)
			cmd.Stdin = bytes.NewReader(archive)
			cmd.ExtraFiles = []*os.File{r}
			var out bytes.Buffer
			cmd.Stderr = &out
			if err := cmd.Start(); err != nil {
				return err
			}
			r.Close()
			for _, id := range list {
				fmt.Fprintln(w, id)
			}
			w.Close()
			if err := cmd.Wait(); err != nil {
				return fmt.Errorf("pg_restore (%s): %v: %s", phase, err, out.String())
			}
			return nil
		},
	}
}

func digest(t *testing.T, c *pgtest.Cluster, db string) string {
	var parts []string
	for _, table := range []string{"p", "c", "part", "big", "wide"} {
		parts = append(parts, table+"="+c.Query(t, db, `SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM `+table+` x`)[0][0])
	}
	return strings.Join(parts, " ")
}

// Small chunks over several connections: a table's rows cut at every chunk size, chunks
// of one table spread over connections and COPYs, a row longer than a chunk, pg_dump's
// "\." line falling anywhere, tables ending while another connection still loads.
func TestRestoreInSmallChunks(t *testing.T) {
	c := pgtest.Start(t)
	src := c.NewDB(t)
	c.Exec(t, src, planSchema+`
		INSERT INTO part VALUES (1, '2024-03-01'), (2, '2024-04-01');
		CREATE TABLE big (id int PRIMARY KEY, t text);
		INSERT INTO big SELECT g, CASE WHEN g % 97 = 0 THEN E'\\.' WHEN g % 89 = 0 THEN E'multi\nline' ELSE md5(g::text) END FROM generate_series(1, 50000) g;
		CREATE INDEX ON big (t);
		CREATE TABLE wide (id int, t text); INSERT INTO wide VALUES (1, repeat('x', 300000)), (2, 'short'), (3, repeat('y', 200000));`)
	path := filepath.Join(t.TempDir(), "d.dump")
	cmd := exec.Command(filepath.Join(c.BinDir, "pg_dump"), "-Fc", "-f", path, src)
	cmd.Env = append(os.Environ(), c.Env(src)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
	want := digest(t, c, src)
	for _, chunk := range []int{1 << 10, 7777, 64 << 10} {
		t.Run(strconv.Itoa(chunk), func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			br := bufio.NewReader(f)
			a, err := pgarchive.ReadTOC(br, true)
			if err != nil {
				t.Fatal(err)
			}
			db := c.NewDB(t)
			cfg := engineFor(t, c, db)
			cfg.Jobs, cfg.ChunkSize = 3, chunk
			var mu sync.Mutex
			var messages []string
			cfg.Progress = func(p Progress) {
				mu.Lock()
				defer mu.Unlock()
				if p.Message != "" {
					messages = append(messages, p.Message)
				}
			}
			res, err := Restore(context.Background(), a, br, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := digest(t, c, db); got != want {
				t.Errorf("restored\n%s\nwant\n%s", got, want)
			}
			var rows int64
			for _, n := range res.Rows {
				rows += n
			}
			if res.Tables != 5 || rows != 50000+3+1+2 || res.Built != len(newPlanOrFatal(t, a).items) {
				t.Errorf("result %+v (%d rows)", res, rows)
			}
			if left := c.Query(t, "postgres", `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'enginetest'`)[0][0]; left != "0" {
				t.Errorf("%s connections left open", left)
			}
			if !strings.Contains(strings.Join(messages, "\n"), "loaded every table: 50006 rows in 5 tables") {
				t.Errorf("messages:\n%s", strings.Join(messages, "\n"))
			}
		})
	}
}

func newPlanOrFatal(t *testing.T, a *pgarchive.Archive) *plan {
	p, err := newPlan(a)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A failure stops everything at once and is the error returned: here every row the
// table refuses (a CHECK calling a function that names a table without its schema: fine
// live, but a restore runs with an empty search_path).
func TestRestoreFailsWithTheFirstError(t *testing.T) {
	c := pgtest.Start(t)
	src := c.NewDB(t)
	c.Exec(t, src, `CREATE TABLE p (id int); CREATE FUNCTION n() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM p';
		CREATE TABLE big (id int CHECK (n() >= 0), t text);
		INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 60000) g;`)
	path := filepath.Join(t.TempDir(), "d.dump")
	cmd := exec.Command(filepath.Join(c.BinDir, "pg_dump"), "-Fc", "-f", path, src)
	cmd.Env = append(os.Environ(), c.Env(src)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	a, err := pgarchive.ReadTOC(br, true)
	if err != nil {
		t.Fatal(err)
	}
	db := c.NewDB(t)
	cfg := engineFor(t, c, db)
	cfg.Jobs, cfg.ChunkSize = 2, 64<<10
	_, err = Restore(context.Background(), a, br, cfg)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "loading public.big") || !strings.Contains(pe.Message, `relation "p" does not exist`) {
		t.Fatalf("err = %v", err)
	}
	// Restore has closed its connections when it returns; their server processes end a
	// moment later, when the server reads the goodbye.
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := c.Query(t, "postgres", `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'enginetest'`)[0][0]
		if left == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%s connections left open 5 s after the restore returned", left)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}
