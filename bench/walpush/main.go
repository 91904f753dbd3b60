// Command walpush times `drconsole wal-push` of one WAL segment into the S3 test server
// against the shell pipeline an operator would write for the same job, side by side:
//
//	A: drconsole wal-push --gpg-recipient PUB SEG
//	B: zstd -c SEG | gpg --encrypt --recipient FPR | curl -X PUT --data-binary @- URL
//
// run.sh makes the segment (real WAL from a throwaway cluster) and the key and calls it;
// see README.md in this directory. Rounds alternate A B A B after one warm-up of each;
// each run starts with nothing under that name in the bucket, so every run uploads. It
// prints every round, the medians, the ratio A/B pair by pair and its median, and the
// peak RSS of each side (getrusage: the largest process of the command's tree).
package main

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/johannesboyne/gofakes3"

	"drconsole/internal/s3test"
)

const bucket = "bench"

var timeBin string

func main() {
	bin := flag.String("drconsole", "", "drconsole binary")
	seg := flag.String("segment", "", "WAL segment to push")
	pub := flag.String("recipient", "", "armored OpenPGP public key file (drconsole --gpg-recipient)")
	fpr := flag.String("fpr", "", "the same key's fingerprint (gpg --recipient; GNUPGHOME holds it)")
	sec := flag.String("key", "", "armored secret key, to check once that each side's object decodes to the segment")
	rounds := flag.Int("rounds", 9, "counted rounds; each runs A then B")
	level := flag.Int("zstd-level", 3, "the pipeline's zstd level (3, zstd's default, is what drconsole's matches)")
	gpgZ := flag.String("gpg-compress", "none", "the pipeline's gpg --compress-algo: none (as drconsole: the data is already zstd) or zlib (gpg's default)")
	flag.StringVar(&timeBin, "time", "/usr/bin/time", "GNU time, for each command's peak RSS")
	maxRatio := flag.Float64("max-ratio", 0, "exit 3 when the median ratio A/B exceeds this (0: never)")
	serve := flag.Bool("serve", false, "only start the S3 test server with an empty bucket, print its URL, run until stdin closes (to time or profile by hand)")
	flag.Parse()
	if *serve {
		srv := s3test.New()
		defer srv.Close()
		if err := srv.Backend.CreateBucket(bucket); err != nil {
			fmt.Fprintln(os.Stderr, "walpush:", err)
			os.Exit(1)
		}
		fmt.Printf("%s/%s\n", srv.Endpoint, bucket)
		io.Copy(io.Discard, os.Stdin)
		return
	}
	if *bin == "" || *seg == "" || *pub == "" || *fpr == "" {
		fmt.Fprintln(os.Stderr, "walpush: -drconsole, -segment, -recipient and -fpr are required")
		os.Exit(2)
	}
	ratio, err := run(*bin, *seg, *pub, *fpr, *sec, *rounds, *level, *gpgZ)
	if err != nil {
		fmt.Fprintln(os.Stderr, "walpush:", err)
		os.Exit(1)
	}
	if *maxRatio > 0 && ratio > *maxRatio {
		fmt.Printf("median ratio %.3f exceeds %.2f\n", ratio, *maxRatio)
		os.Exit(3)
	}
}

type sample struct {
	secs  float64
	rssKB int64
	cpu   float64 // user + system seconds of the command's whole tree
	bytes int64   // size of the stored object
}

func run(bin, seg, pub, fpr, sec string, rounds, level int, gpgZ string) (float64, error) {
	work, err := os.MkdirTemp("", "drconsole-bench-walpush")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(work)
	srv := s3test.New()
	defer srv.Close()
	if err := srv.Backend.CreateBucket(bucket); err != nil {
		return 0, err
	}
	cfg := filepath.Join(work, "drconsole.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "locations:\n  - name: primary\n    bucket: %s\n    endpoint: %s\n    region: us-east-1\n    path_style: true\n", bucket, srv.Endpoint), 0o600); err != nil {
		return 0, err
	}
	// No AWS_CA_BUNDLE (some machines set one for every tool): the SDK would read and parse
	// every certificate in it at start (about 10 ms here) for a plain-HTTP endpoint that
	// needs none, which curl does not.
	env := append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "AWS_CA_BUNDLE=") }), "AWS_ACCESS_KEY_ID=bench", "AWS_SECRET_ACCESS_KEY=bench", "AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	name := filepath.Base(seg)
	pipeKey := "pipeline/" + name + ".zst.gpg"

	// A's object is wal/NAME-SHA.zst.gpg; B's is pipeKey. Emptied before every run.
	push := exec.Command(bin, "wal-push", "--config", cfg, "--gpg-recipient", pub, seg)
	pipeline := exec.Command("bash", "-o", "pipefail", "-c",
		`zstd -q -c -"$1" "$2" | gpg -q --batch --no-tty --trust-model always --compress-algo "$3" --encrypt --recipient "$4" |
		curl -sS -f -X PUT -H 'Content-Type: application/octet-stream' --data-binary @- \
			--aws-sigv4 aws:amz:us-east-1:s3 --user bench:bench "$5"`,
		"pipeline", fmt.Sprint(level), seg, gpgZ, fpr, srv.Endpoint+"/"+bucket+"/"+pipeKey)
	sides := []struct {
		label string
		cmd   *exec.Cmd
	}{{"A drconsole wal-push", push}, {"B zstd | gpg | curl", pipeline}}

	one := func(c *exec.Cmd) (sample, error) {
		if err := empty(srv); err != nil {
			return sample{}, err
		}
		// Peak RSS through GNU time: a process this one starts inherits this process's
		// high-water mark at exec (os/exec starts it with vfork), time's child does not.
		rssFile := filepath.Join(work, "rss")
		cmd := exec.Command(timeBin, append([]string{"-f", "%M", "-o", rssFile}, c.Args...)...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		err := cmd.Run()
		secs := time.Since(start).Seconds()
		if err != nil {
			return sample{}, fmt.Errorf("%s: %v: %s", strings.Join(c.Args, " "), err, out.Bytes())
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		s := sample{secs: secs, cpu: tv(ru.Utime) + tv(ru.Stime)}
		if b, err := os.ReadFile(rssFile); err != nil {
			return s, err
		} else if _, err := fmt.Sscan(string(b), &s.rssKB); err != nil {
			return s, fmt.Errorf("%s: %q: %v", rssFile, b, err)
		}
		objs, err := keys(srv)
		if err != nil {
			return s, err
		}
		if len(objs) != 1 {
			return s, fmt.Errorf("%s stored %d objects, want 1: %v", c.Args[0], len(objs), objs)
		}
		o, err := srv.Backend.HeadObject(bucket, objs[0])
		if err != nil {
			return s, err
		}
		s.bytes = o.Size
		return s, nil
	}

	info, err := os.Stat(seg)
	if err != nil {
		return 0, err
	}
	fmt.Printf("segment %s, %.1f MiB; S3 test server at %s; %d rounds after a warm-up; %d CPUs, load %s\n",
		name, float64(info.Size())/(1<<20), srv.Endpoint, rounds, runtime.NumCPU(), load())
	fmt.Printf("A: drconsole wal-push (zstd: klauspost's default level with a 2 MiB window, zstd -3's; OpenPGP to the key; a LIST, one PUT)\n")
	fmt.Printf("B: zstd -%d | gpg --compress-algo %s --encrypt | curl --aws-sigv4 -X PUT --data-binary @-\n\n", level, gpgZ)

	if sec != "" {
		if err := checkDecodes(bin, cfg, sec, seg, env, srv, push, pipeline, pipeKey, one); err != nil {
			return 0, err
		}
	}
	for _, s := range sides { // warm-up: page cache, gpg's keyring, the binaries
		if _, err := one(s.cmd); err != nil {
			return 0, err
		}
	}
	res := make([][]sample, len(sides))
	var ratios []float64
	for r := range rounds {
		for i, s := range sides {
			got, err := one(s.cmd)
			if err != nil {
				return 0, err
			}
			res[i] = append(res[i], got)
		}
		a, b := res[0][r], res[1][r]
		ratios = append(ratios, a.secs/b.secs)
		fmt.Printf("round %2d  A %6.1f ms (cpu %5.1f ms, %5.1f MiB RSS)  B %6.1f ms (cpu %5.1f ms, %5.1f MiB RSS)  A/B %.3f  load %s\n",
			r+1, a.secs*1000, a.cpu*1000, float64(a.rssKB)/1024, b.secs*1000, b.cpu*1000, float64(b.rssKB)/1024, a.secs/b.secs, load())
	}
	fmt.Printf("\nmedian of %d rounds (min–max):\n", rounds)
	for i, s := range sides {
		secs := field(res[i], func(x sample) float64 { return x.secs * 1000 })
		cpu := field(res[i], func(x sample) float64 { return x.cpu * 1000 })
		rss := field(res[i], func(x sample) float64 { return float64(x.rssKB) / 1024 })
		fmt.Printf("  %-22s %6.1f ms (%.1f–%.1f)  cpu %6.1f ms  peak RSS %5.1f MiB (max %.1f)  stored %.2f MiB\n", s.label,
			median(secs), slices.Min(secs), slices.Max(secs), median(cpu), median(rss), slices.Max(rss), float64(res[i][0].bytes)/(1<<20))
	}
	m := median(ratios)
	fmt.Printf("  ratio A/B, pair by pair: median %.3f (%.3f–%.3f); of the medians %.3f\n",
		m, slices.Min(ratios), slices.Max(ratios),
		median(field(res[0], func(x sample) float64 { return x.secs }))/median(field(res[1], func(x sample) float64 { return x.secs })))
	return m, nil
}

// checkDecodes pushes once with each side and reads both objects back to the segment's
// bytes: drconsole's with wal-fetch, the pipeline's with gpg -d | zstd -d.
func checkDecodes(bin, cfg, sec, seg string, env []string, srv *s3test.Server, push, pipeline *exec.Cmd, pipeKey string,
	one func(*exec.Cmd) (sample, error)) error {
	want, err := os.ReadFile(seg)
	if err != nil {
		return err
	}
	if _, err := one(push); err != nil {
		return err
	}
	dest := filepath.Join(filepath.Dir(cfg), "RECOVERYXLOG")
	fetch := exec.Command(bin, "wal-fetch", "--config", cfg, "--gpg-key", sec, "--prefetch", "0", filepath.Base(seg), dest)
	fetch.Env = env
	if out, err := fetch.CombinedOutput(); err != nil {
		return fmt.Errorf("wal-fetch of drconsole's object: %v: %s", err, out)
	}
	got, err := os.ReadFile(dest)
	if err != nil || !bytes.Equal(got, want) {
		return fmt.Errorf("drconsole's object does not decode to the segment (%v)", err)
	}
	os.Remove(dest)
	if _, err := one(pipeline); err != nil {
		return err
	}
	o, err := srv.Backend.GetObject(bucket, pipeKey, nil)
	if err != nil {
		return err
	}
	defer o.Contents.Close()
	dec := exec.Command("bash", "-o", "pipefail", "-c", `gpg -q --batch --no-tty -d | zstd -q -d -c`)
	dec.Env = env
	dec.Stdin = o.Contents
	got, err = dec.Output()
	if err != nil || !bytes.Equal(got, want) {
		return fmt.Errorf("the pipeline's object does not decode to the segment (%v)", err)
	}
	sum := sha256.Sum256(want)
	fmt.Printf("both objects decode to the segment (sha256 %x…)\n\n", sum[:8])
	return nil
}

// empty removes every object, so each run finds nothing archived under its name.
func empty(srv *s3test.Server) error {
	objs, err := keys(srv)
	if err != nil || len(objs) == 0 {
		return err
	}
	_, err = srv.Backend.DeleteMulti(bucket, objs...)
	return err
}

func keys(srv *s3test.Server) ([]string, error) {
	list, err := srv.Backend.ListBucket(bucket, nil, gofakes3.ListBucketPage{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range list.Contents {
		out = append(out, o.Key)
	}
	return out, nil
}

func field(xs []sample, f func(sample) float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func load() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
