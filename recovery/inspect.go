package recovery

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	"drconsole/storage"
)

// Source is one backup in one location: what every restore, verify and inspect reads.
type Source struct {
	Location storage.Location
	Backup   storage.Backup
}

func (s Source) String() string {
	return fmt.Sprintf("%s (%s)", storage.Printable(s.Backup.Name), s.Location.String())
}

func (s Source) open(ctx context.Context) (io.ReadCloser, error) {
	rc, err := s.Location.Open(ctx, s.Backup)
	if err != nil {
		return nil, fmt.Errorf("open backup %q: %w", s.Backup.Name, err)
	}
	return rc, nil
}

// Contents is what a backup holds, as far as it has been read.
type Contents struct {
	Backup  storage.Backup
	Layers  []storage.Layer // outermost first, e.g. openpgp, gzip, custom dump
	Format  storage.Format
	Archive *Archive // custom-format archives only
	// Signature is who signed the OpenPGP layer. After Inspect a Trusted signature is
	// the signer's claim, checked when the stream is read to its end (Verify, restore);
	// after Verify returns it without error, it is proven.
	Signature Signature

	// Filled in by Verify, which reads the whole backup:
	Read       int64 // bytes read from the location
	Dump       int64 // bytes of dump after decryption and decompression
	DataBlocks int   // custom format: data blocks walked and decompressed
	Complete   bool  // the stream was read to its end and every integrity check passed
	Duration   time.Duration

	// Rows: custom format, each table's rows in the archive (Restored and Live are -1).
	Rows []TableRows
}

// Encrypted reports whether the backup had an OpenPGP layer.
func (c *Contents) Encrypted() bool {
	for _, l := range c.Layers {
		if l == storage.LayerOpenPGP {
			return true
		}
	}
	return false
}

// Inspect reads just enough of a backup to prove the key works and the dump's header and
// table of contents parse. Nothing touches a database.
func Inspect(ctx context.Context, src Source, keys *Keys) (*Contents, error) {
	rc, err := src.open(ctx)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	st, err := Unwrap(rc, keys)
	if err != nil {
		return nil, inBackup(src, err)
	}
	defer st.Close()
	c := &Contents{Backup: src.Backup, Layers: st.Layers, Format: st.Format, Signature: st.Signature}
	if st.Format == storage.FormatCustom {
		if c.Archive, err = ReadArchive(st.Reader); err != nil {
			return nil, inBackup(src, err)
		}
	} else if err := scanSQLHead(st.Reader); err != nil {
		return nil, inBackup(src, err)
	}
	return c, nil
}

// Verify reads the whole backup to its end: decryption with its integrity check,
// decompression with its CRC, and for custom archives every data block, so a truncated
// or damaged backup is found before it is needed.
func Verify(ctx context.Context, src Source, keys *Keys, rep Reporter) (*Contents, error) {
	rep = orDiscard(rep)
	start := time.Now()
	c, err := verify(ctx, src, keys, rep)
	if c != nil {
		c.Duration = time.Since(start)
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w: verify of %q stopped", ErrCancelled, src.Backup.Name)
	}
	rep.Report(Event{Time: time.Now(), Stage: StageDone, Final: true, Err: err})
	return c, err
}

func verify(ctx context.Context, src Source, keys *Keys, rep Reporter) (*Contents, error) {
	rc, err := src.open(ctx)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	read := NewMeter(contextReader{ctx, rc})
	st, err := Unwrap(read, keys)
	if err != nil {
		return nil, inBackup(src, err)
	}
	defer st.Close()
	dump := NewMeter(st.Reader)
	br := bufio.NewReaderSize(dump, stageBuffer)
	c := &Contents{Backup: src.Backup, Layers: st.Layers, Format: st.Format, Signature: st.Signature}
	stop := sampleProgress(ctx, rep, StageStream, src.Backup.Size, read, dump, nil)
	defer stop()
	if st.Format == storage.FormatCustom {
		a := &archiveReader{r: br}
		arch, err := a.readHead()
		if err == nil {
			err = a.readTOC(arch)
		}
		if err != nil {
			return nil, inBackup(src, archiveErr(err))
		}
		c.Archive = arch
		rep.Report(Event{Time: time.Now(), Stage: StageStream, TablesTotal: len(arch.Tables),
			Message: fmt.Sprintf("archive %s from pg_dump %s of database %q: %d tables with data", arch.Version, arch.DumpVersion, arch.Database, len(arch.Tables))})
		c.DataBlocks, err = a.readData(arch)
		if err != nil {
			if isEOF(err) {
				err = fmt.Errorf("%w: archive ends inside a data block", ErrTruncated)
			}
			return nil, inBackup(src, err)
		}
		c.Rows = a.rows
	} else {
		if _, err := io.Copy(io.Discard, br); err != nil {
			return nil, inBackup(src, err)
		}
	}
	// Both branches read the dump stream to its EOF, which every layer only gives after
	// its own end-of-stream check (OpenPGP MDC and signature, gzip CRC and size) has passed.
	c.Read, c.Dump, c.Complete = read.Count(), dump.Count(), true
	return c, nil
}

// inBackup names the backup in an error: `backup "NAME": wrong decryption key …`.
func inBackup(src Source, err error) error {
	return fmt.Errorf("backup %q: %w", src.Backup.Name, err)
}

// contextReader stops a stream when its context ends.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func orDiscard(r Reporter) Reporter {
	if r == nil {
		return Discard
	}
	return r
}

// ProgressInterval is how often figures are sampled and reported during a stream.
var ProgressInterval = 100 * time.Millisecond

// sampleProgress reports the meters every ProgressInterval until stop is called.
// Sampling on a timer keeps the per-byte cost of progress at zero.
func sampleProgress(ctx context.Context, rep Reporter, stage Stage, size int64, read, dump *Meter, tables func() (done, total int, current string)) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(ProgressInterval)
		defer t.Stop()
		start := time.Now()
		var rate float64
		lastN, lastT := int64(0), start
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case now := <-t.C:
				n := read.Count()
				if dt := now.Sub(lastT).Seconds(); dt > 0 {
					inst := float64(n-lastN) / dt
					if rate == 0 {
						rate = inst
					} else {
						rate = 0.7*rate + 0.3*inst
					}
				}
				lastN, lastT = n, now
				e := Event{Time: now, Stage: stage, Read: n, Size: size, Rate: rate, ETA: -1}
				if dump != nil {
					e.Decompressed = dump.Count()
				}
				if size > 0 && rate > 0 && n <= size {
					e.ETA = time.Duration(float64(size-n) / rate * float64(time.Second))
				}
				if tables != nil {
					e.TablesDone, e.TablesTotal, e.Table = tables()
				}
				rep.Report(e)
			}
		}
	}()
	return func() {
		select {
		case <-done:
		default:
			close(done)
		}
		<-finished
	}
}
