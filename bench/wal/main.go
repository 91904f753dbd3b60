// Command wal measures how fast drconsole wal-fetch gives PostgreSQL its segments from a
// distant bucket, with and without fetching ahead, against cp from a local directory,
// and how much memory the prefetch takes.
//
//	go run ./bench/wal                          # 64 segments of 16 MiB, 20 ms per request, 3 rounds
//	go run ./bench/wal -segments 32 -latency 5ms -rounds 5
//
// It builds drconsole, starts an in-memory S3 server behind a proxy that adds latency to
// every request, archives the segments into it with wal-push (encrypted to a throwaway
// key), then, in each round, restores them one after the other as restore_command does:
// one wal-fetch process per segment, without (--prefetch 0) and with fetching ahead
// (--prefetch 8), and cp from a local directory. Replay itself costs nothing here, so the
// figures are the fetch's alone: the worst case for fetching ahead, which otherwise
// overlaps with replay.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"drconsole/internal/s3test"
)

func main() {
	segments := flag.Int("segments", 64, "segments to archive and fetch")
	latency := flag.Duration("latency", 20*time.Millisecond, "latency the proxy adds to every request")
	rounds := flag.Int("rounds", 3, "rounds; each runs every variant once")
	ahead := flag.Int("prefetch", 8, "segments fetched ahead in the prefetch variant")
	flag.Parse()
	if err := run(*segments, *latency, *rounds, *ahead); err != nil {
		fmt.Fprintln(os.Stderr, "bench/wal:", err)
		os.Exit(1)
	}
}

const segSize = 16 << 20

func run(n int, latency time.Duration, rounds, ahead int) error {
	work, err := os.MkdirTemp("", "drconsole-bench-wal")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "drconsole")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v: %s", err, out)
	}
	srv := s3test.New()
	defer srv.Close()
	if err := srv.Backend.CreateBucket("bench"); err != nil {
		return err
	}
	proxy := s3test.NewProxy(srv.Endpoint)
	defer proxy.Close()

	// A throwaway key, made with the same library drconsole uses.
	ent, err := openpgp.NewEntity("Bench", "", "bench@example.com", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		return err
	}
	pub, sec := filepath.Join(work, "public.asc"), filepath.Join(work, "secret.asc")
	for path, write := range map[string]func(*os.File) error{
		pub: func(f *os.File) error { return ent.Serialize(f) },
		sec: func(f *os.File) error { return ent.SerializePrivate(f, nil) },
	} {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := write(f); err != nil {
			return err
		}
		f.Close()
	}
	cfg := filepath.Join(work, "drconsole.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("locations:\n  - name: primary\n    bucket: bench\n    endpoint: %s\n    region: us-east-1\n    path_style: true\n", proxy.Endpoint)), 0o600)
	env := append(os.Environ(), "AWS_ACCESS_KEY_ID=bench", "AWS_SECRET_ACCESS_KEY=bench", "AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")

	// Segments shaped like WAL for the compressor: a page header, then half random bytes
	// and half repeats (zstd takes them to about half).
	local := filepath.Join(work, "local")
	os.Mkdir(local, 0o700)
	var names []string
	fmt.Printf("archiving %d segments of 16 MiB with wal-push …\n", n)
	for i := range n {
		name := fmt.Sprintf("000000010000000%01X%08X", (i+1)/256, (i+1)%256)
		names = append(names, name)
		b := make([]byte, segSize)
		r := rand.New(rand.NewPCG(uint64(i), 7))
		for j := 64; j+16 <= len(b); j += 16 {
			binary.LittleEndian.PutUint64(b[j:], r.Uint64())
		}
		lsn := uint64((i+1)/256)<<32 + uint64((i+1)%256)*segSize
		binary.LittleEndian.PutUint16(b[0:], 0xD110)
		binary.LittleEndian.PutUint16(b[2:], 0x0002)
		binary.LittleEndian.PutUint64(b[8:], lsn)
		binary.LittleEndian.PutUint32(b[32:], segSize)
		binary.LittleEndian.PutUint32(b[36:], 8192)
		path := filepath.Join(local, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return err
		}
		cmd := exec.Command(bin, "wal-push", "--config", cfg, "--gpg-recipient", pub, path)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("wal-push %s: %v: %s", name, err, out)
		}
	}
	proxy.SetLatency(latency)

	variants := []struct {
		name string
		one  func(name, dest string) error
	}{
		{"cp from a local directory", func(name, dest string) error {
			return exec.Command("cp", filepath.Join(local, name), dest).Run()
		}},
		{"wal-fetch --prefetch 0", fetcher(bin, cfg, sec, env, 0)},
		{fmt.Sprintf("wal-fetch --prefetch %d", ahead), fetcher(bin, cfg, sec, env, ahead)},
	}
	times := make([][]float64, len(variants))
	for round := range rounds {
		for i, v := range variants {
			pgwal := filepath.Join(work, fmt.Sprintf("pg_wal_%d_%d", round, i))
			os.Mkdir(pgwal, 0o700)
			dest := filepath.Join(pgwal, "RECOVERYXLOG")
			start := time.Now()
			for _, name := range names {
				if err := v.one(name, dest); err != nil {
					return fmt.Errorf("%s: %s: %v", v.name, name, err)
				}
			}
			secs := time.Since(start).Seconds()
			times[i] = append(times[i], secs)
			fmt.Printf("round %d  %-28s %6.2f s  %6.1f MiB/s\n", round+1, v.name, secs, float64(n*segSize)/secs/(1<<20))
			time.Sleep(500 * time.Millisecond) // let a last prefetch end
			os.RemoveAll(pgwal)
		}
	}
	med := func(xs []float64) float64 { s := slices.Clone(xs); slices.Sort(s); return s[len(s)/2] }
	fmt.Printf("\n%d segments of 16 MiB, %v added per request, median of %d rounds:\n", n, latency, rounds)
	for i, v := range variants {
		fmt.Printf("  %-28s %6.2f s\n", v.name, med(times[i]))
	}
	fmt.Printf("  prefetch vs on demand:       %.2f× faster\n", med(times[1])/med(times[2]))
	fmt.Printf("  prefetch vs cp:              %.2f× the time\n", med(times[2])/med(times[0]))

	// The prefetch's own peak RSS: run one in the foreground.
	pgwal := filepath.Join(work, "pg_wal_rss")
	os.Mkdir(pgwal, 0o700)
	spool := filepath.Join(pgwal, "drconsole-prefetch")
	os.Mkdir(spool, 0o700)
	cmd := exec.Command(bin, "wal-fetch", "--config", cfg, "--gpg-key", sec, "--prefetch", fmt.Sprint(ahead), "--spool", spool,
		"--prefetch-size", fmt.Sprint(segSize), names[0], filepath.Join(pgwal, "RECOVERYXLOG"))
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("prefetch: %v: %s", err, out)
	}
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
	got, _ := filepath.Glob(filepath.Join(spool, "0*"))
	fmt.Printf("  prefetch of %d segments (%d spooled): peak RSS %.1f MiB\n", ahead, len(got), float64(rss)/1024)
	return nil
}

// fetcher runs wal-fetch as restore_command does, one process per segment.
func fetcher(bin, cfg, sec string, env []string, ahead int) func(name, dest string) error {
	return func(name, dest string) error {
		cmd := exec.Command(bin, "wal-fetch", "--config", cfg, "--gpg-key", sec, "--prefetch", fmt.Sprint(ahead), name, dest)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
}
