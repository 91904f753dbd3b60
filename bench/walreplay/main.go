// Command walreplay measures what issue 9 asks of wal-fetch: a real PostgreSQL recovery
// replaying archived segments from the S3 test server behind added latency, with one
// wal-fetch process per segment as restore_command runs it, on demand (--prefetch 0) and
// fetching ahead (--prefetch N), and as drconsole configures it for the servers it
// recovers (wal.RestoreCommand: mv from the spool, else wal-fetch), against `cp` from a
// local directory of the same segments.
// run.sh makes the base backup and the WAL; this driver archives the segments into the S3
// test server with wal-push (encrypted to a throwaway key), then, in each round, recovers
// a copy of the base backup once per variant and times it from the server's start to the
// end of recovery (the log's "ready to accept connections"). It also reports the peak RSS
// of every wal-fetch process it saw, and of the prefetch processes apart.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/johannesboyne/gofakes3"

	"drconsole/internal/s3test"
	"drconsole/wal"
)

func main() {
	work := flag.String("work", "", "run.sh's work directory, holding drconsole")
	data := flag.String("data", "", "where run.sh keeps the base backup (base/) and its WAL (archive/)")
	pgbin := flag.String("pgbin", "/usr/lib/postgresql/15/bin", "PostgreSQL binaries")
	port := flag.Int("port", 54335, "port of the recovering servers (127.0.0.1 only)")
	rounds := flag.Int("rounds", 3, "rounds; each recovers once per variant")
	latency := flag.Duration("latency", 20*time.Millisecond, "latency the proxy adds to every S3 request")
	ahead := flag.Int("prefetch", 8, "segments fetched ahead in the prefetch variant")
	minSpeedup := flag.Float64("min-speedup", 0, "exit 3 when prefetch is less than this many times faster than on demand (0: never)")
	maxVsCp := flag.Float64("max-vs-cp", 0, "exit 3 when prefetch takes more than this many times cp's time (0: never)")
	flag.Parse()
	if *work == "" {
		fmt.Fprintln(os.Stderr, "walreplay: give -work (run bench/walreplay/run.sh)")
		os.Exit(2)
	}
	met, err := run(*work, *data, *pgbin, *port, *rounds, *latency, *ahead, *minSpeedup, *maxVsCp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "walreplay:", err)
		os.Exit(1)
	}
	if !met {
		os.Exit(3)
	}
}

func run(work, data, pgbin string, port, rounds int, latency time.Duration, ahead int, minSpeedup, maxVsCp float64) (bool, error) {
	pg, err := user.Lookup("postgres")
	if err != nil {
		return false, err
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	own := func(path string) error { return os.Chown(path, uid, gid) }

	srv := s3test.New()
	defer srv.Close()
	if err := srv.Backend.CreateBucket("bench"); err != nil {
		return false, err
	}
	proxy := s3test.NewProxy(srv.Endpoint)
	defer proxy.Close()

	ent, err := openpgp.NewEntity("Bench", "", "bench@example.com", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		return false, err
	}
	pub, sec := filepath.Join(work, "public.asc"), filepath.Join(work, "secret.asc")
	for path, write := range map[string]func(*os.File) error{
		pub: func(f *os.File) error { return ent.Serialize(f) },
		sec: func(f *os.File) error { return ent.SerializePrivate(f, nil) },
	} {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return false, err
		}
		if err := write(f); err != nil {
			return false, err
		}
		f.Close()
		own(path)
	}
	cfg := filepath.Join(work, "drconsole.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, "locations:\n  - name: primary\n    bucket: bench\n    endpoint: %s\n    region: us-east-1\n    path_style: true\n", proxy.Endpoint), 0o600)
	own(cfg)
	// No AWS_CA_BUNDLE (some machines set one for every tool), as in bench/walpush: each
	// wal-fetch would read and parse every certificate in it at start (~10 ms here) for
	// a plain-HTTP endpoint that needs none.
	env := append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "AWS_CA_BUNDLE=") }), "AWS_ACCESS_KEY_ID=bench", "AWS_SECRET_ACCESS_KEY=bench", "AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")

	bin := filepath.Join(work, "drconsole")
	archive := filepath.Join(data, "archive")
	files, err := os.ReadDir(archive)
	if err != nil {
		return false, err
	}
	var stored int64
	segments := 0
	fmt.Printf("archiving %d files into the S3 test server with wal-push …\n", len(files))
	for _, e := range files {
		cmd := exec.Command(bin, "wal-push", "--config", cfg, "--gpg-recipient", pub, filepath.Join(archive, e.Name()))
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return false, fmt.Errorf("wal-push %s: %v: %s", e.Name(), err, out)
		}
		if len(e.Name()) == 24 {
			segments++
		}
	}
	if list, err := srv.Backend.ListBucket("bench", nil, gofakes3.ListBucketPage{}); err == nil {
		for _, c := range list.Contents {
			stored += c.Size
		}
	}
	fmt.Printf("%d segments (%d MiB) stored as %.1f MiB\n", segments, segments*16, float64(stored)/(1<<20))
	proxy.SetLatency(latency)

	fetch := func(n int) string {
		return fmt.Sprintf("%s wal-fetch --config %s --gpg-key %s --prefetch %d %%f %%p", bin, cfg, sec, n)
	}
	variants := []struct{ name, restore string }{
		{"cp from a local directory", "cp " + archive + "/%f %p"},
		{"wal-fetch --prefetch 0", fetch(0)},
		{fmt.Sprintf("wal-fetch --prefetch %d", ahead), fetch(ahead)},
		{"as drconsole configures it", wal.RestoreCommand(fetch(ahead))},
	}
	times := make([][]float64, len(variants))
	var rssFetch, rssPrefetch int64
	for round := range rounds {
		for i, v := range variants {
			dir := filepath.Join(work, "r")
			os.RemoveAll(dir)
			if out, err := exec.Command("cp", "-a", filepath.Join(data, "base"), dir).CombinedOutput(); err != nil {
				return false, fmt.Errorf("cp base: %v: %s", err, out)
			}
			// Every variant's server is set up as drconsole sets up the servers it
			// recovers (wal/pitr.go): the backup's timeline named, so no history file is
			// looked for before the first segment. The log's timestamps give phasesOf.
			conf := fmt.Sprintf("\nlog_line_prefix = '%%m '\nport = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\narchive_mode = off\nhot_standby = off\nrecovery_target_timeline = '1'\nrestore_command = '%s'\n",
				port, work, v.restore)
			f, err := os.OpenFile(filepath.Join(dir, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return false, err
			}
			f.WriteString(conf)
			f.Close()
			os.WriteFile(filepath.Join(dir, "recovery.signal"), nil, 0o600)
			own(filepath.Join(dir, "recovery.signal"))
			logf := filepath.Join(work, "recovery.log")
			os.Remove(logf)
			exec.Command("sync").Run()

			watch := newRSSWatch()
			var before syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			start := time.Now()
			cmd := exec.Command("runuser", "-u", "postgres", "--", filepath.Join(pgbin, "pg_ctl"), "-D", dir, "-l", logf, "start")
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				return false, fmt.Errorf("%s: pg_ctl start: %v: %s", v.name, err, out)
			}
			restored, err := waitRecovered(logf, 15*time.Minute)
			secs := time.Since(start).Seconds()
			phases := phasesOf(logf)
			if keep := os.Getenv("WALREPLAY_LOGS"); keep != "" {
				exec.Command("cp", logf, filepath.Join(keep, fmt.Sprintf("round%d-variant%d.log", round+1, i))).Run()
			}
			fetchRSS, prefetchRSS, cpu, prefetchCPU := watch.stop()
			fetches := watch.fetches
			var after syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			// This process serves S3 (and watches /proc, a little): CPU a real bucket
			// spends elsewhere.
			s3CPU := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()).Seconds()
			exec.Command("runuser", "-u", "postgres", "--", filepath.Join(pgbin, "pg_ctl"), "-D", dir, "-m", "immediate", "stop").Run()
			if err != nil {
				return false, fmt.Errorf("%s: %v", v.name, err)
			}
			rssFetch, rssPrefetch = max(rssFetch, fetchRSS), max(rssPrefetch, prefetchRSS)
			times[i] = append(times[i], secs)
			fmt.Printf("round %d  %-26s %6.2f s  %3d segments  %5.1f MiB/s  CPU: wal-fetch %5.2f s (prefetch %.2f), S3 server %.2f s\n",
				round+1, v.name, secs, restored, float64(restored)*16/secs, cpu, prefetchCPU, s3CPU)
			fmt.Printf("         %s, %d wal-fetch processes\n", phases, fetches)
			time.Sleep(time.Second) // a last prefetch finds its spool gone and ends
			os.RemoveAll(dir)
		}
	}
	med := func(xs []float64) float64 { s := slices.Clone(xs); slices.Sort(s); return s[len(s)/2] }
	fmt.Printf("\nrecovery of %d segments, %v added per S3 request, median of %d rounds:\n", segments, latency, rounds)
	for i, v := range variants {
		fmt.Printf("  %-28s %6.2f s\n", v.name, med(times[i]))
	}
	// Each round's variants ran back to back, under the same load from other work: the
	// ratios are taken within the round, then their median.
	ratio := func(a, b int) (m, lo, hi float64) {
		var rs []float64
		for r := range rounds {
			rs = append(rs, times[a][r]/times[b][r])
		}
		return med(rs), slices.Min(rs), slices.Max(rs)
	}
	plainUp, _, _ := ratio(1, 2)
	plainCp, _, _ := ratio(2, 0)
	speedup, sLo, sHi := ratio(1, 3)
	vsCp, cLo, cHi := ratio(3, 0)
	fmt.Printf("  wal-fetch --prefetch %d alone: %.2f× faster than on demand, %.2f× cp's time\n", ahead, plainUp, plainCp)
	fmt.Printf("  as configured vs on demand:  %.2f× faster (target ≥ 2; rounds %.2f–%.2f)\n", speedup, sLo, sHi)
	fmt.Printf("  as configured vs cp:         %.2f× the time (target ≤ 1.3; rounds %.2f–%.2f)\n", vsCp, cLo, cHi)
	fmt.Printf("  peak RSS: wal-fetch %.1f MiB, its prefetch process %.1f MiB (%d ahead)\n",
		float64(rssFetch)/1024, float64(rssPrefetch)/1024, ahead)
	met := (minSpeedup == 0 || speedup >= minSpeedup) && (maxVsCp == 0 || vsCp <= maxVsCp)
	if !met {
		fmt.Println("  target NOT met")
	}
	return met, nil
}

// waitRecovered waits for the recovering server's log to say recovery ended, and returns
// how many files restore_command restored.
func waitRecovered(logf string, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		b, _ := os.ReadFile(logf)
		s := string(b)
		if strings.Contains(s, "database system is ready to accept connections") {
			return strings.Count(s, "restored log file"), nil
		}
		for _, bad := range []string{"FATAL:", "PANIC:", "database system is shut down"} {
			if strings.Contains(s, bad) {
				return 0, fmt.Errorf("recovery failed:\n%s", tail(s, 15))
			}
		}
	}
	return 0, fmt.Errorf("recovery did not end within %v", limit)
}

// phasesOf says when, after the server's first log line, restore_command restored its
// first and last file and recovery ended: where a variant's time goes.
func phasesOf(logf string) string {
	b, _ := os.ReadFile(logf)
	var first, firstRestored, lastRestored, ready time.Time
	var gaps []string
	for _, line := range strings.Split(string(b), "\n") {
		if len(line) < 27 {
			continue
		}
		t, err := time.Parse("2006-01-02 15:04:05.000 MST", line[:27])
		if err != nil {
			continue
		}
		if first.IsZero() {
			first = t
		}
		switch {
		case strings.Contains(line, "restored log file"):
			if firstRestored.IsZero() {
				firstRestored = t
			} else if g := t.Sub(lastRestored); g > 80*time.Millisecond {
				gaps = append(gaps, fmt.Sprintf("%d:%dms", strings.Count(string(b[:strings.Index(string(b), line)]), "restored log file"), g.Milliseconds()))
			}
			lastRestored = t
		case strings.Contains(line, "ready to accept connections"):
			ready = t
		}
	}
	at := func(t time.Time) float64 { return t.Sub(first).Seconds() }
	if len(gaps) > 8 {
		gaps = append(gaps[:8], fmt.Sprintf("and %d more", len(gaps)-8))
	}
	return fmt.Sprintf("first file restored at +%.2f s, last at +%.2f s, ready at +%.2f s; over 80 ms before file %s", at(firstRestored), at(lastRestored), at(ready), strings.Join(gaps, " "))
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// rssWatch samples /proc for wal-fetch processes and keeps the largest peak RSS (VmHWM,
// which only grows) of the plain fetches and of the prefetch processes.
type rssWatch struct {
	done            chan struct{}
	wg              sync.WaitGroup
	fetch, prefetch int64
	cpu             map[string]float64 // CPU seconds of each wal-fetch process, last seen
	prefetchPIDs    map[string]bool
	fetches         int // wal-fetch processes seen, the prefetch apart
}

func newRSSWatch() *rssWatch {
	w := &rssWatch{done: make(chan struct{}), cpu: map[string]float64{}, prefetchPIDs: map[string]bool{}}
	w.wg.Add(1)
	const (
		other = iota
		fetchProc
		prefetchProc
		shProc // restore_command's sh, which may exec wal-fetch itself
	)
	kinds := map[string]int{}
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-t.C:
			}
			// Each process's command line is read once: reading every one each tick
			// cost the machine most of a core, which the recovery then lacked.
			entries, _ := os.ReadDir("/proc")
			live := map[string]bool{}
			for _, e := range entries {
				pid := e.Name()
				if pid[0] < '0' || pid[0] > '9' {
					continue
				}
				live[pid] = true
				k, seen := kinds[pid]
				// A wal-fetch's child is read again until it is seen as the prefetch:
				// between fork and exec it still has its parent's command line; and
				// restore_command's sh may become the wal-fetch.
				if !seen || k == fetchProc || k == shProc {
					b, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
					argv := strings.Split(string(b), "\x00")
					switch {
					case !strings.Contains(string(b), "wal-fetch"):
						k = other
					case filepath.Base(argv[0]) != "drconsole":
						k = shProc // names wal-fetch too
					case strings.Contains(string(b), "--prefetch-size"):
						if seen && k == fetchProc {
							w.fetches-- // counted before its exec
						}
						k = prefetchProc
					default:
						if k != fetchProc || !seen {
							w.fetches++
						}
						k = fetchProc
					}
					kinds[pid] = k
				}
				if k == other || k == shProc {
					continue
				}
				p := filepath.Join("/proc", pid, "cmdline")
				hwm := vmHWM(filepath.Join("/proc", pid, "status"))
				if c, ok := cpuSeconds(filepath.Join("/proc", pid, "stat")); ok {
					w.cpu[p] = c
				}
				if k == prefetchProc {
					w.prefetch = max(w.prefetch, hwm)
					w.prefetchPIDs[p] = true
				} else {
					w.fetch = max(w.fetch, hwm)
				}
			}
			for pid := range kinds {
				if !live[pid] {
					delete(kinds, pid) // a pid used again is another process
				}
			}
		}
	}()
	return w
}

func (w *rssWatch) stop() (fetch, prefetch int64, cpu, prefetchCPU float64) {
	close(w.done)
	w.wg.Wait()
	for p, c := range w.cpu {
		cpu += c
		if w.prefetchPIDs[p] {
			prefetchCPU += c
		}
	}
	return w.fetch, w.prefetch, cpu, prefetchCPU
}

// cpuSeconds is a process's user and system CPU time so far.
func cpuSeconds(stat string) (float64, bool) {
	b, err := os.ReadFile(stat)
	if err != nil {
		return 0, false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:])) // state is f[0]; utime, stime are fields 14 and 15 of the whole line
	if len(f) < 13 {
		return 0, false
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100, true // clock ticks: 100 a second on Linux
}

// vmHWM is a process's peak RSS in KiB.
func vmHWM(status string) int64 {
	f, err := os.Open(status)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return n
		}
	}
	return 0
}
