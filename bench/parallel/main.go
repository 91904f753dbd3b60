// Command parallel is the parallel engine's benchmark driver (see run.sh and README.md):
// it restores the same dumps with raw pg_restore (whole, by section, -j N) and with
// drconsole's engines, round after round, and prints the figures and the ratios.
//
//	parallel -app DIR -many DIR -key SECRET -db URL -bin PGBIN [-reps N] [-jobs 1,2,4]
//
// Each drconsole restore runs in a child process of its own (parallel restore ...), so
// that its peak RSS is its own.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"drconsole/recovery"
	"drconsole/storage"
)

// NAME is the backup's name in each dataset directory; NAME.gz.gpg is the same dump,
// gzipped and encrypted as the backup job does.
const NAME = "spywatcher_full_20240125_120000.dump"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "restore" {
		if err := restoreChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "parallel restore:", err)
			os.Exit(1)
		}
		return
	}
	app := flag.String("app", "", "application-shaped dataset `dir` (one big table)")
	many := flag.String("many", "", "many-table dataset `dir`")
	key := flag.String("key", "", "secret key `file` the backups are encrypted to")
	dbURL := flag.String("db", "", "server `URL` (its database is ignored)")
	bin := flag.String("bin", "/usr/lib/postgresql/15/bin", "PostgreSQL `bindir`")
	reps := flag.Int("reps", 3, "rounds")
	jobs := flag.String("jobs", "1,2,4", "connections of the parallel engine to try, `list`")
	flag.Parse()
	var ns []int
	for _, s := range strings.Split(*jobs, ",") {
		n, err := strconv.Atoi(s)
		if err != nil {
			die("bad -jobs: %v", err)
		}
		ns = append(ns, n)
	}
	b := &bench{app: *app, many: *many, key: *key, url: *dbURL, bin: *bin, jobs: ns}
	b.run(*reps)
}

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "parallel: "+format+"\n", args...)
	os.Exit(1)
}

type bench struct {
	pm                       int // the server's postmaster, when it runs on this machine; 0 otherwise
	app, many, key, url, bin string
	jobs                     []int
	results                  []result
	round                    int
}

// result is one restore's figures.
type result struct {
	Round    int     `json:"round"`
	Variant  string  `json:"variant"`
	Seconds  float64 `json:"seconds"`
	PreData  float64 `json:"pre_data"`
	Load     float64 `json:"load"`
	PostData float64 `json:"post_data"`
	Checks   float64 `json:"checks"`
	RSSMiB   float64 `json:"rss_mib"`
	CPU      float64 `json:"cpu"` // the restore's client processes: drconsole and the pg_restore it runs, or pg_restore
	Engine   string  `json:"engine"`
	// ServerCPU is the server's processes' CPU seconds during the restore (0: not
	// measured); CPU seconds, unlike seconds, hardly change with other work on the box.
	ServerCPU float64 `json:"server_cpu"`
	// By phase (pre-data, load, post-data, checks): drconsole's own CPU seconds (not its
	// pg_restore children's) and the server's. For raw-sections: pg_restore's and the
	// server's in each section.
	PhaseOwn    [4]float64 `json:"phase_own"`
	PhaseServer [4]float64 `json:"phase_server"`
}

const db = "bench_parallel"

func (b *bench) admin(sql string) {
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(b.url)
	if err != nil {
		die("%v", err)
	}
	cfg.Database = "postgres"
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		die("%v", err)
	}
	defer c.Close(ctx)
	for _, s := range strings.Split(sql, ";") {
		if strings.TrimSpace(s) != "" {
			if _, err := c.Exec(ctx, s); err != nil {
				die("%s: %v", s, err)
			}
		}
	}
}

// fresh leaves no database named db, with the last run's writes flushed.
func (b *bench) fresh() {
	b.admin("DROP DATABASE IF EXISTS " + db + " WITH (FORCE); CHECKPOINT")
	syscall.Sync()
}

func (b *bench) env() []string {
	u, err := pgx.ParseConfig(b.url)
	if err != nil {
		die("%v", err)
	}
	return append(os.Environ(), "PGHOST="+u.Host, "PGPORT="+strconv.Itoa(int(u.Port)), "PGUSER="+u.User, "PGPASSWORD="+u.Password, "PGSSLMODE=disable")
}

// timed runs a command and returns its wall time, its largest process's RSS and CPU.
func (b *bench) timed(name string, args ...string) (time.Duration, *syscall.Rusage) {
	cmd := exec.Command(name, args...)
	cmd.Env = b.env()
	out, _ := os.CreateTemp("", "bench-out")
	defer os.Remove(out.Name())
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		out.Seek(0, 0)
		msg, _ := io.ReadAll(out)
		die("%s %s: %v\n%s", name, strings.Join(args, " "), err, msg)
	}
	return took, cmd.ProcessState.SysUsage().(*syscall.Rusage)
}

func cpu(ru *syscall.Rusage) float64 {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func (b *bench) add(r result) {
	r.Round = b.round
	fmt.Fprintf(os.Stderr, "  %-28s %7.2f s (pre %5.2f load %6.2f post %6.2f checks %5.2f)  %6.1f MiB  %6.2f cpu-s  server %6.2f cpu-s (load %5.2f)  %s\n",
		r.Variant, r.Seconds, r.PreData, r.Load, r.PostData, r.Checks, r.RSSMiB, r.CPU, r.ServerCPU, r.PhaseServer[1], r.Engine)
	b.results = append(b.results, r)
}

// raw is `createdb && pg_restore FILE` with extra pg_restore arguments.
func (b *bench) raw(variant, file string, extra ...string) {
	b.fresh()
	start, srv := time.Now(), serverCPU(b.pm)
	b.timed(filepath.Join(b.bin, "createdb"), db)
	_, ru := b.timed(filepath.Join(b.bin, "pg_restore"), append(append([]string{"-d", db}, extra...), file)...)
	b.add(result{Variant: variant, Seconds: time.Since(start).Seconds(), RSSMiB: float64(ru.Maxrss) / 1024, CPU: cpu(ru), Engine: "pg_restore",
		ServerCPU: serverCPU(b.pm) - srv})
}

// rawSections is the same restore as raw, one section at a time: its load phase is the
// data section.
func (b *bench) rawSections(variant, file string) {
	b.fresh()
	start, srv0 := time.Now(), serverCPU(b.pm)
	b.timed(filepath.Join(b.bin, "createdb"), db)
	var took [3]time.Duration
	r := result{Variant: variant, Engine: "pg_restore"}
	for i, s := range []string{"pre-data", "data", "post-data"} {
		srv := serverCPU(b.pm)
		var ru *syscall.Rusage
		took[i], ru = b.timed(filepath.Join(b.bin, "pg_restore"), "-d", db, "--section="+s, file)
		r.PhaseOwn[i], r.PhaseServer[i] = cpu(ru), serverCPU(b.pm)-srv
		r.CPU += cpu(ru)
	}
	r.Seconds, r.PreData, r.Load, r.PostData = time.Since(start).Seconds(), took[0].Seconds(), took[1].Seconds(), took[2].Seconds()
	r.ServerCPU = serverCPU(b.pm) - srv0
	b.add(r)
}

// pipeline is `gpg -d | gunzip | pg_restore`: what pg_restore takes on the backup as stored.
func (b *bench) pipeline(variant, backup string) {
	b.fresh()
	start, srv := time.Now(), serverCPU(b.pm)
	b.timed(filepath.Join(b.bin, "createdb"), db)
	_, ru := b.timed("bash", "-o", "pipefail", "-c", `gpg -q --batch -d "$1" 2>/dev/null | gunzip | "$2/pg_restore" -d "$3"`, "_", backup, b.bin, db)
	b.add(result{Variant: variant, Seconds: time.Since(start).Seconds(), Engine: "pg_restore", CPU: cpu(ru), ServerCPU: serverCPU(b.pm) - srv})
}

// drconsole restores backup with an engine, in a child process.
func (b *bench) drconsole(variant, backup, engine string, jobs int) {
	b.fresh()
	self, _ := os.Executable()
	cmd := exec.Command(self, "restore", "-key", b.key, "-db", b.url, "-engine", engine, "-jobs", strconv.Itoa(jobs), "-server-pid", strconv.Itoa(b.pm), backup)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		die("%s: %v", variant, err)
	}
	var r result
	if err := json.Unmarshal(out, &r); err != nil {
		die("%s: %v: %s", variant, err, out)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	r.Variant, r.CPU = variant, cpu(ru) // RSSMiB: the child's own peak (VmHWM)
	b.add(r)
}

func (b *bench) run(reps int) {
	b.pm = postmaster(b.url)
	app := filepath.Join(b.app, NAME)
	appGPG := app + ".gz.gpg"
	for _, f := range []string{app, appGPG, filepath.Join(b.many, NAME), filepath.Join(b.many, NAME) + ".gz.gpg"} {
		// Warm the page cache, without holding the file: a child's peak RSS counts from
		// what its parent held when it forked.
		r, err := os.Open(f)
		if err != nil {
			die("dataset file %s: %v", f, err)
		}
		io.Copy(io.Discard, r)
		r.Close()
	}
	// Each comparison is a pair run back to back, and its ratio is taken within the
	// round: on a shared machine the load from other work changes by the minute.
	for rep := 1; rep <= reps; rep++ {
		b.round = rep
		fmt.Fprintf(os.Stderr, "== round %d of %d (load average %s)\n", rep, reps, loadavg())
		for _, n := range b.jobs {
			b.raw("raw app", app)
			b.drconsole(fmt.Sprintf("parallel-%d app", n), appGPG, recovery.EngineParallel, n)
			b.rawSections("raw-sections app", app)
		}
		b.drconsole("pg_restore-engine app", appGPG, recovery.EnginePgRestore, 0)
		b.pipeline("pipeline app", appGPG)
		many := filepath.Join(b.many, NAME)
		b.raw("raw-j2 many", many, "-j", "2")
		b.drconsole("parallel-2 many", many+".gz.gpg", recovery.EngineParallel, 2)
	}
	b.fresh()
	b.report(reps)
}

func (b *bench) values(variant string, field func(result) float64) []float64 {
	var v []float64
	for _, r := range b.results {
		if r.Variant == variant {
			v = append(v, field(r))
		}
	}
	sort.Float64s(v)
	return v
}

func best(v []float64) float64 { return v[0] }

// inRound is a variant's figure in one round; the mean when it ran twice.
func (b *bench) inRound(round int, variant string, field func(result) float64) float64 {
	var sum float64
	var n int
	for _, r := range b.results {
		if r.Round == round && r.Variant == variant {
			sum += field(r)
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func median(v []float64) float64 {
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func secs(r result) float64 { return r.Seconds }
func load(r result) float64 { return r.Load }
func rss(r result) float64  { return r.RSSMiB }

func (b *bench) report(reps int) {
	var variants []string
	for _, r := range b.results {
		if !slices.Contains(variants, r.Variant) {
			variants = append(variants, r.Variant)
		}
	}
	fmt.Printf("\n%d rounds, %d CPUs. Best and median of the rounds; load = the data phase (best);\n"+
		"pre, post (to the checks) and checks (drconsole's, with every table's count(*)): medians.\n", reps, runtimeCPUs())
	fmt.Printf("%-24s %8s %8s %8s %8s %8s %8s %8s %9s %8s %8s\n", "variant", "best s", "median s", "pre s", "load s", "post s", "checks s", "load med", "RSS MiB", "cpu s", "srv cpu")
	for _, v := range variants {
		s := b.values(v, secs)
		l := b.values(v, load)
		med := func(f func(result) float64) float64 { return median(b.values(v, f)) }
		fmt.Printf("%-24s %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f %9.1f %8.2f %8.2f\n", v, best(s), median(s),
			med(func(r result) float64 { return r.PreData }), best(l), med(func(r result) float64 { return r.PostData }),
			med(func(r result) float64 { return r.Checks }), median(l),
			b.values(v, rss)[len(b.values(v, rss))-1], med(func(r result) float64 { return r.CPU }), med(func(r result) float64 { return r.ServerCPU }))
	}
	// CPU seconds by phase: where the work goes, whatever else ran on the box.
	fmt.Printf("\nCPU seconds by phase (medians): client (drconsole's own; pg_restore for raw-sections) / server\n")
	fmt.Printf("%-24s %13s %13s %13s %13s\n", "variant", "pre", "load", "post", "checks")
	for _, v := range variants {
		if b.values(v, func(r result) float64 { return r.PhaseServer[1] })[0] == 0 {
			continue
		}
		fmt.Printf("%-24s", v)
		for i := range 4 {
			fmt.Printf("  %5.2f / %5.2f", median(b.values(v, func(r result) float64 { return r.PhaseOwn[i] })),
				median(b.values(v, func(r result) float64 { return r.PhaseServer[i] })))
		}
		fmt.Println()
	}
	// ratio is num/den within each round (the mean where a variant ran twice in one),
	// then the median and the range of those.
	ratio := func(name, num, den string, field func(result) float64, op string, target float64) {
		var rs []float64
		for r := 1; r <= reps; r++ {
			n, d := b.inRound(r, num, field), b.inRound(r, den, field)
			if n > 0 && d > 0 {
				rs = append(rs, n/d)
			}
		}
		if len(rs) == 0 {
			return
		}
		sort.Float64s(rs)
		verdict := "ok"
		if m := median(rs); op == ">=" && m < target || op == "<=" && m > target {
			verdict = "MISSED"
		}
		fmt.Printf("%-52s %6.3f %6.3f %6.3f   target %s %.2f %s\n", name, median(rs), rs[0], rs[len(rs)-1], op, target, verdict)
	}
	fmt.Printf("\n%-52s %6s %6s %6s   (paired: each round's ratio)\n", "ratio", "median", "min", "max")
	for _, n := range b.jobs {
		ratio(fmt.Sprintf("whole: raw pg_restore / parallel-%d (x faster)", n), "raw app", fmt.Sprintf("parallel-%d app", n), secs, ">=", 1.2)
	}
	for _, n := range b.jobs {
		ratio(fmt.Sprintf("load: raw --section=data / parallel-%d load (x)", n), "raw-sections app", fmt.Sprintf("parallel-%d app", n), load, ">=", 1.6)
	}
	ratio("many tables: raw pg_restore -j 2 / parallel-2 (x)", "raw-j2 many", "parallel-2 many", secs, ">=", 1.0)
	ratio("pg_restore engine (counting rows) / pipeline", "pg_restore-engine app", "pipeline app", secs, "<=", 1.05)
	ratio("pg_restore engine (counting rows) / raw pg_restore", "pg_restore-engine app", "raw app", secs, "<=", 1.05)
	for _, n := range b.jobs {
		v := b.values(fmt.Sprintf("parallel-%d app", n), rss)
		bound := float64(n*4) + 48 // N × chunk size (4 MiB) + 48 MiB
		verdict := "ok"
		if v[len(v)-1] > bound {
			verdict = "MISSED"
		}
		fmt.Printf("%-52s %6.1f        bound %.0f MiB (N × 4 MiB + 48) %s\n", fmt.Sprintf("peak RSS, parallel-%d (MiB, max of rounds)", n), v[len(v)-1], bound, verdict)
	}
}

func runtimeCPUs() int {
	n, _ := strconv.Atoi(strings.TrimSpace(string(must(exec.Command("nproc").Output()))))
	return n
}

func must(b []byte, err error) []byte {
	if err != nil {
		die("%v", err)
	}
	return b
}

// restoreChild is one drconsole restore, as `drconsole restore --target-db` does it:
// Prepare, Restore (with its checks), into a new database; it prints its figures as JSON.
func restoreChild(args []string) error {
	fs := flag.NewFlagSet("restore", flag.ExitOnError)
	key := fs.String("key", "", "secret key file")
	dbURL := fs.String("db", "", "server URL")
	engine := fs.String("engine", "", "engine")
	jobs := fs.Int("jobs", 0, "connections")
	verbose := fs.Bool("v", false, "log the restore's messages to stderr")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to `file`")
	pm := fs.Int("server-pid", 0, "the server's postmaster `pid`, to measure its CPU; 0: found from -db when the server runs here")
	fs.Parse(args)
	if *pm == 0 {
		*pm = postmaster(*dbURL)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ents, err := recovery.ReadKeyFile(*key)
	if err != nil {
		return err
	}
	conn, err := recovery.ResolveConn(*dbURL, func(string) string { return "" })
	if err != nil {
		return err
	}
	abs, _ := filepath.Abs(fs.Arg(0))
	loc := storage.NewDir("bench", filepath.Dir(abs))
	ctx := context.Background()
	backup, err := loc.Stat(ctx, filepath.Base(abs))
	if err != nil {
		return err
	}
	start, startOwn, startSrv := time.Now(), ownCPU(), serverCPU(*pm)
	plan, err := recovery.Prepare(ctx, recovery.Source{Location: loc, Backup: backup},
		recovery.Options{Conn: conn, Keys: &recovery.Keys{Entities: ents}, TestDB: db, Engine: *engine, Jobs: *jobs})
	if err != nil {
		return err
	}
	// Phases as the operator sees them: from the first event of each, with the CPU
	// seconds used by then (drconsole's own, the server's).
	var streamAt, loadAt, postAt, checksAt time.Time
	var mu sync.Mutex
	var own, srv [5]float64 // at the start of each phase, then at the end
	mark := func(i int) { own[i], srv[i] = ownCPU(), serverCPU(*pm) }
	r, err := plan.Restore(ctx, recovery.ReporterFunc(func(e recovery.Event) {
		mu.Lock()
		defer mu.Unlock()
		if *verbose && e.Message != "" {
			fmt.Fprintf(os.Stderr, "%7.3f %-9s %s\n", e.Time.Sub(start).Seconds(), e.Phase, e.Message)
		}
		switch {
		case e.Stage == recovery.StageStream && streamAt.IsZero():
			streamAt = e.Time
			mark(0)
		case e.Phase == "load" && loadAt.IsZero():
			loadAt = e.Time
			mark(1)
		case e.Phase == "post-data" && postAt.IsZero():
			postAt = e.Time
			mark(2)
		case e.Stage == recovery.StageChecks && checksAt.IsZero():
			checksAt = e.Time
			mark(3)
		}
	}))
	if err != nil {
		return err
	}
	if failed := recovery.Failed(r.Checks); len(failed) > 0 {
		return fmt.Errorf("checks failed: %+v", failed)
	}
	end := time.Now()
	mu.Lock()
	defer mu.Unlock()
	mark(4)
	res := result{Seconds: end.Sub(start).Seconds(), Engine: r.Engine, RSSMiB: peakRSS(), ServerCPU: srv[4] - startSrv}
	if !loadAt.IsZero() && !postAt.IsZero() && !checksAt.IsZero() {
		res.PreData, res.Load, res.PostData = loadAt.Sub(streamAt).Seconds(), postAt.Sub(loadAt).Seconds(), checksAt.Sub(postAt).Seconds()
		for i := range 4 {
			res.PhaseOwn[i], res.PhaseServer[i] = own[i+1]-own[i], srv[i+1]-srv[i]
		}
		// The pre-data phase counts from the start: the pre-flight is the restore's too.
		res.PhaseOwn[0], res.PhaseServer[0] = own[1]-startOwn, srv[1]-startSrv
	}
	if !checksAt.IsZero() {
		res.Checks = end.Sub(checksAt).Seconds()
	}
	for _, tr := range r.Rows {
		if tr.Archive != tr.Restored {
			return fmt.Errorf("rows of %s: %+v", tr.Name, tr)
		}
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// ownCPU is this process's CPU seconds so far (not its children's).
func ownCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return cpu(&ru)
}

// postmaster is the pid of the server's postmaster when it runs on this machine (the
// parent of a backend of ours, as /proc shows it); 0 otherwise.
func postmaster(url string) int {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0
	}
	defer c.Close(ctx)
	var pid int
	if c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid) != nil {
		return 0
	}
	f, err := procStat(pid)
	if err != nil || c.PgConn().PID() != uint32(pid) {
		return 0
	}
	pm, _ := strconv.Atoi(f[1])
	return pm
}

// procStat is the fields of /proc/PID/stat after the command's name: f[0] is the state,
// f[1] the parent, f[11:15] utime, stime, cutime, cstime in ticks of 1/100 s.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 15 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return f, nil
}

// serverCPU is the CPU seconds the server's processes have used so far: the postmaster's
// own, its exited children's (it waited for them) and its live children's. 0 when pm is 0.
func serverCPU(pm int) float64 {
	if pm == 0 {
		return 0
	}
	ticks := func(f []string, from, to int) int {
		n := 0
		for _, v := range f[from:to] {
			t, _ := strconv.Atoi(v)
			n += t
		}
		return n
	}
	f, err := procStat(pm)
	if err != nil {
		return 0
	}
	total := ticks(f, 11, 15)
	ents, _ := os.ReadDir("/proc")
	want := strconv.Itoa(pm)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f, err := procStat(pid); err == nil && f[1] == want {
			total += ticks(f, 11, 13)
		}
	}
	return float64(total) / 100
}

// peakRSS is this process's peak resident set (VmHWM), in MiB: its own, not that of the
// pg_restore it runs nor of the process it was forked from.
func peakRSS() float64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return float64(kb) / 1024
		}
	}
	return -1
}
