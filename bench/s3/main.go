// Command s3 measures how fast storage.S3 streams a large backup, and how much memory the
// reader needs, through a proxy that adds latency to every request like a distant region.
//
//	go run ./bench/s3                 # 1 GiB, 20 ms per request, concurrency 1 and 4, 8 MiB parts
//	go run ./bench/s3 -size 256MiB -latency 5ms -conc 1,2,4,8
//
// The in-memory S3 server (which holds the whole object) and the proxy run in one child
// process and each download in another, so the peak RSS reported is the reader's own.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"drconsole/internal/s3test"
	"drconsole/storage"
)

const (
	bucket = "bench"
	key    = "postgres/full/spywatcher_full_20240125_120000.dump.gz"
)

func main() {
	role := flag.String("role", "", "internal: server or reader")
	size := flag.String("size", "1GiB", "object size")
	latency := flag.Duration("latency", 20*time.Millisecond, "latency the proxy adds to every request")
	concs := flag.String("conc", "1,4", "concurrencies to measure")
	part := flag.String("part", "8MiB", "part size")
	endpoint := flag.String("endpoint", "", "internal: where the reader connects")
	cpuprofile := flag.String("cpuprofile", "", "write each reader's CPU profile to FILE.concN")
	flag.Parse()
	var err error
	switch *role {
	case "server":
		if *cpuprofile != "" {
			f, _ := os.Create(*cpuprofile + ".server")
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
		err = serve(parseSize(*size), *latency)
	case "reader":
		c, _ := strconv.Atoi(*concs)
		err = read(*endpoint, c, parseSize(*part), *cpuprofile)
	default:
		err = orchestrate(*size, *latency, *concs, *part, *cpuprofile)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseSize(s string) int64 {
	s = strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(s, "B"), "i"))
	shift := 0
	if i := strings.IndexAny(s, "KMG"); i > 0 {
		shift = 10 * (strings.Index("KMG", s[i:i+1]) + 1)
		s = s[:i]
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(s, "I"), 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: bad size", s)
		os.Exit(2)
	}
	return n << shift
}

// serve fills an in-memory server with one object and proxies to it with latency; it
// prints "READY endpoint sha256" and runs until stdin closes.
func serve(size int64, latency time.Duration) error {
	srv := s3test.New()
	defer srv.Close()
	if err := srv.Backend.CreateBucket(bucket); err != nil {
		return err
	}
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1}), size), h)
	if err := srv.Put(bucket, key, src, size); err != nil {
		return err
	}
	proxy := s3test.NewProxy(srv.Endpoint)
	defer proxy.Close()
	proxy.SetLatency(latency)
	fmt.Printf("READY %s %s\n", proxy.Endpoint, hex.EncodeToString(h.Sum(nil)))
	io.Copy(io.Discard, os.Stdin)
	return nil
}

type result struct {
	Concurrency int     `json:"concurrency"`
	PartSize    int64   `json:"part_size"`
	Bytes       int64   `json:"bytes"`
	Seconds     float64 `json:"seconds"`
	MBps        float64 `json:"mb_per_s"`
	SHA256      string  `json:"sha256"`
	PeakRSS     int64   `json:"peak_rss"`
	PeakHeap    int64   `json:"peak_heap_inuse"`
	BaseRSS     int64   `json:"base_rss"`
}

// read downloads the object once through storage.S3 and reports speed and memory.
func read(endpoint string, conc int, part int64, cpuprofile string) error {
	if cpuprofile != "" {
		f, err := os.Create(fmt.Sprintf("%s.conc%d", cpuprofile, conc))
		if err != nil {
			return err
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	res := result{Concurrency: conc, PartSize: part, BaseRSS: vmHWM()}
	loc, err := storage.Open(ctx, storage.LocationConfig{
		Name: "bench", Type: "s3", Bucket: bucket, Endpoint: endpoint, Region: "us-east-1",
		Concurrency: conc, PartSize: storage.Size(part),
	}, storage.WithAWSConfig(config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("bench", "bench", ""))))
	if err != nil {
		return err
	}
	b, err := loc.Stat(ctx, key)
	if err != nil {
		return err
	}
	var peakHeap atomic.Int64
	stop := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if int64(ms.HeapInuse) > peakHeap.Load() {
				peakHeap.Store(int64(ms.HeapInuse))
			}
		}
	}()
	start := time.Now()
	rc, err := loc.Open(ctx, b)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(h, rc)
	rc.Close()
	if err != nil {
		return err
	}
	res.Seconds = time.Since(start).Seconds()
	close(stop)
	res.Bytes, res.MBps = n, float64(n)/1e6/res.Seconds
	res.SHA256 = hex.EncodeToString(h.Sum(nil))
	res.PeakRSS, res.PeakHeap = vmHWM(), peakHeap.Load()
	return json.NewEncoder(os.Stdout).Encode(res)
}

// vmHWM is the process's peak resident set size in bytes.
func vmHWM() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func orchestrate(size string, latency time.Duration, concs, part, cpuprofile string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	env := append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull)
	server := exec.Command(self, "-role", "server", "-size", size, "-latency", latency.String(), "-cpuprofile", cpuprofile)
	server.Env, server.Stderr = env, os.Stderr
	stdin, _ := server.StdinPipe()
	out, _ := server.StdoutPipe()
	fmt.Printf("filling the in-memory server with %s ...\n", size)
	if err := server.Start(); err != nil {
		return err
	}
	defer func() { stdin.Close(); server.Wait() }()
	go func() { // a ^C still stops the server
		c := make(chan os.Signal, 1)
		signal.Notify(c, os.Interrupt)
		<-c
		server.Process.Kill()
		os.Exit(130)
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 3 || f[0] != "READY" {
		return fmt.Errorf("server did not start: %q %v", line, err)
	}
	endpoint, want := f[1], f[2]

	fmt.Printf("%-12s %-10s %-10s %-10s %-14s %-14s %s\n", "concurrency", "part", "MB/s", "seconds", "peak RSS MiB", "bound MiB", "peak heap MiB")
	var results []result
	for _, c := range strings.Split(concs, ",") {
		cmd := exec.Command(self, "-role", "reader", "-endpoint", endpoint, "-conc", c, "-part", part, "-cpuprofile", cpuprofile)
		cmd.Env, cmd.Stderr = env, os.Stderr
		outp, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("reader (concurrency %s): %v", c, err)
		}
		var r result
		if err := json.Unmarshal(outp, &r); err != nil {
			return fmt.Errorf("reader output %q: %v", outp, err)
		}
		if r.SHA256 != want {
			return fmt.Errorf("concurrency %d: the download differs from the object (sha256 %s, want %s)", r.Concurrency, r.SHA256, want)
		}
		bound := int64(r.Concurrency)*r.PartSize + 32<<20
		fmt.Printf("%-12d %-10s %-10.1f %-10.2f %-14.1f %-14.1f %.1f\n", r.Concurrency, fmt.Sprintf("%dMiB", r.PartSize>>20), r.MBps, r.Seconds,
			float64(r.PeakRSS)/(1<<20), float64(bound)/(1<<20), float64(r.PeakHeap)/(1<<20))
		if r.PeakRSS > bound {
			fmt.Printf("  over the bound: peak RSS %d MiB > concurrency × part size + 32 MiB\n", r.PeakRSS>>20)
		}
		results = append(results, r)
	}
	if len(results) >= 2 {
		first, last := results[0], results[len(results)-1]
		ratio := last.MBps / first.MBps
		verdict := "meets"
		if ratio < 1.5 {
			verdict = "misses"
		}
		fmt.Printf("concurrency %d is %.2f× concurrency %d (%s the 1.5× target) with %v added per request; bytes identical (sha256 %s…)\n",
			last.Concurrency, ratio, first.Concurrency, verdict, latency, want[:12])
	}
	return nil
}
