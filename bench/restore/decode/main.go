// Command decode is the restore benchmark's "decode stage alone": it opens a backup
// through storage and recovery exactly as a restore does and reads the dump to nowhere.
//
//	decode [-cpuprofile FILE] [-feed DB] SECRET_KEY_FILE BACKUP_FILE
//
// With -feed it writes the dump into `pg_restore -d DB` in 64 KiB writes, as drconsole
// does, so the profile shows the decode stage's cost while pg_restore loads rows.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"time"

	"drconsole/recovery"
	"drconsole/storage"
)

func main() {
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to `file`")
	feedDB := flag.String("feed", "", "feed the dump to pg_restore -d `database` (libpq settings from PG*)")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: decode [-cpuprofile FILE] [-feed DB] SECRET_KEY_FILE BACKUP_FILE")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), flag.Arg(1), *cpuprofile, *feedDB); err != nil {
		fmt.Fprintln(os.Stderr, "decode:", err)
		os.Exit(1)
	}
}

func run(keyFile, backupFile, cpuprofile, feedDB string) error {
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
	var n int64
	if feedDB == "" {
		n, err = io.Copy(io.Discard, stream.Reader)
	} else {
		n, err = feed(feedDB, stream.Reader)
	}
	if err != nil {
		return fmt.Errorf("read backup %q: %w", filepath.Base(abs), err)
	}
	secs := time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "decode: %d bytes of dump in %.2fs (%.0f MB/s)\n", n, secs, float64(n)/secs/1e6)
	return nil
}

// feed writes r into pg_restore's stdin in 64 KiB writes (recovery's feedSize).
func feed(db string, r io.Reader) (int64, error) {
	cmd := exec.Command("pg_restore", "-d", db)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	w, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	var total int64
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return total, err
		}
	}
	w.Close()
	return total, cmd.Wait()
}
