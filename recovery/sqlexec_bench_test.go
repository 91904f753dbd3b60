package recovery

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"drconsole/internal/pgtest"
)

// BenchmarkPlainReplay restores the same pg_dump -Fp file with execPlain and with
// psql --single-transaction -f, alternately, each into a fresh database, and reports
// both rates, their ratio (psql time / execPlain time: above 1, execPlain is faster)
// and the CPU time each client used per run.
//
//	go test -run '^$' -bench PlainReplay -benchtime 3x ./recovery
//
// Sizes: BENCH_ROWS rows (default 2,000,000) for the COPY dump; the INSERT dumps hold a
// tenth of them.
func BenchmarkPlainReplay(b *testing.B) {
	rows := 2_000_000
	if v := os.Getenv("BENCH_ROWS"); v != "" {
		fmt.Sscan(v, &rows)
	}
	c := pgtest.Shared(b)
	src := c.NewDB(b)
	c.Exec(b, src, fmt.Sprintf(`CREATE TABLE "Event" (id bigint PRIMARY KEY, "userId" int NOT NULL, kind text NOT NULL,
		payload text, score numeric(10,2), at timestamptz NOT NULL);
		INSERT INTO "Event" SELECT g, g %% 5000, 'kind ' || (g %% 17), E'tab\there \\ back ' || md5(g::text),
		g %% 1000 / 7.0, '2024-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, %d) g`, rows))
	psql, err := exec.LookPath(filepath.Join(c.BinDir, "psql"))
	if err != nil {
		b.Skip("no psql")
	}
	dir := b.TempDir()
	for _, d := range []struct {
		name string
		rows int
		args []string
	}{
		{"copy", rows, nil},
		{"inserts-100-rows", rows / 10, []string{"--inserts", "--rows-per-insert=100"}},
		{"inserts-1-row", rows / 10, []string{"--inserts"}},
	} {
		table := "Event"
		if d.rows != rows {
			table = "Event" + d.name
			c.Exec(b, src, fmt.Sprintf(`DROP TABLE IF EXISTS "%s"; CREATE TABLE "%s" AS SELECT * FROM "Event" WHERE id <= %d; ALTER TABLE "%[2]s" ADD PRIMARY KEY (id)`, table, table, d.rows))
		}
		file := filepath.Join(dir, d.name+".sql")
		run(b, c.Env(src), filepath.Join(c.BinDir, "pg_dump"), append([]string{"-Fp", "-t", `"` + table + `"`, "-f", file, src}, d.args...)...)
		st, err := os.Stat(file)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(d.name, func(b *testing.B) {
			var tExec, tPsql, cpuExec, cpuPsql time.Duration
			for i := 0; i < b.N; i++ {
				wall, cpu := timeReplay(b, c, func(db string) (time.Duration, error) {
					conn, err := ResolveConn(c.URL(db), func(string) string { return "" })
					if err != nil {
						return 0, err
					}
					pc, err := conn.connectPg(context.Background(), db, nil)
					if err != nil {
						return 0, err
					}
					defer pc.Close(context.Background())
					f, err := os.Open(file)
					if err != nil {
						return 0, err
					}
					defer f.Close()
					before := processCPU()
					err = execPlain(context.Background(), pc, f, nil, nil)
					return processCPU() - before, err
				})
				tExec, cpuExec = tExec+wall, cpuExec+cpu
				wall, cpu = timeReplay(b, c, func(db string) (time.Duration, error) {
					cmd := exec.Command(psql, "--no-psqlrc", "--quiet", "--no-password", "--set", "ON_ERROR_STOP=1",
						"--single-transaction", "--file", file, "--dbname", db)
					cmd.Env = append(os.Environ(), c.Env(db)...)
					if out, err := cmd.CombinedOutput(); err != nil {
						return 0, fmt.Errorf("%v: %s", err, out)
					}
					return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
				})
				tPsql, cpuPsql = tPsql+wall, cpuPsql+cpu
			}
			n := float64(b.N)
			mb := float64(st.Size()) / (1 << 20)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(d.rows)*n/tExec.Seconds(), "execPlain-rows/s")
			b.ReportMetric(float64(d.rows)*n/tPsql.Seconds(), "psql-rows/s")
			b.ReportMetric(mb*n/tExec.Seconds(), "execPlain-MB/s")
			b.ReportMetric(mb*n/tPsql.Seconds(), "psql-MB/s")
			b.ReportMetric(tPsql.Seconds()/tExec.Seconds(), "psql/execPlain-time")
			b.ReportMetric(cpuExec.Seconds()/n, "execPlain-cpu-s")
			b.ReportMetric(cpuPsql.Seconds()/n, "psql-cpu-s")
		})
	}
}

// timeReplay times load into a fresh database, then drops it; load returns the CPU
// time its client used.
func timeReplay(b *testing.B, c *pgtest.Cluster, load func(db string) (time.Duration, error)) (wall, cpu time.Duration) {
	b.Helper()
	b.StopTimer()
	db := c.NewDB(b)
	c.Exec(b, db, "CHECKPOINT")
	b.StartTimer()
	start := time.Now()
	cpu, err := load(db)
	wall = time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if got := c.Query(b, db, `SELECT count(*) FROM pg_class WHERE relname LIKE 'Event%' AND relkind = 'r'`); got[0][0] != "1" {
		b.Fatalf("restored %s tables", got[0][0])
	}
	c.Exec(b, "postgres", "DROP DATABASE "+pgx.Identifier{db}.Sanitize())
	b.StartTimer()
	return wall, cpu
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
