// Command decode is the restore benchmark's "decode stage alone": it opens a backup
// through storage and recovery exactly as a restore does and reads the dump to nowhere.
//
//	decode [-cpuprofile FILE] SECRET_KEY_FILE BACKUP_FILE
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"drconsole/recovery"
	"drconsole/storage"
)

func main() {
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to `file`")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: decode [-cpuprofile FILE] SECRET_KEY_FILE BACKUP_FILE")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), flag.Arg(1), *cpuprofile); err != nil {
		fmt.Fprintln(os.Stderr, "decode:", err)
		os.Exit(1)
	}
}

func run(keyFile, backupFile, cpuprofile string) error {
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ents, err := recovery.ReadKeyFile(keyFile)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(backupFile)
	if err != nil {
		return err
	}
	loc := storage.NewDir("bench", filepath.Dir(abs))
	start := time.Now()
	rc, err := loc.Open(context.Background(), storage.ParseName(filepath.Base(abs)))
	if err != nil {
		return err
	}
	defer rc.Close()
	stream, err := recovery.Unwrap(rc, &recovery.Keys{Entities: ents})
	if err != nil {
		return fmt.Errorf("open backup %q: %w", filepath.Base(abs), err)
	}
	defer stream.Close()
	n, err := io.Copy(io.Discard, stream.Reader)
	if err != nil {
		return fmt.Errorf("read backup %q: %w", filepath.Base(abs), err)
	}
	secs := time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "decode: %d bytes of dump in %.2fs (%.0f MB/s)\n", n, secs, float64(n)/secs/1e6)
	return nil
}
