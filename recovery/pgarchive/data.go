package pgarchive

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// Kinds of data block (pg_backup_archiver.h).
const (
	blockData  = 1 // BLK_DATA: one entry's data
	blockBlobs = 3 // BLK_BLOBS: large objects, each OID then its data
)

// Block is one data block: an entry's data (TABLE DATA: its COPY rows) or, for a BLOBS
// entry, a run of large objects.
type Block struct {
	Entry *Entry
	Blobs bool // read each object with NextBlob, then Read
}

// Blocks reads the data blocks that follow the table of contents, in the order pg_dump
// wrote them, decompressing each on the fly. It is not safe for concurrent use.
type Blocks struct {
	a      *Archive
	p      *prim
	cur    *Block
	blocks int

	chunks   chunkReader
	in       *bufio.Reader // the chunks, buffered: flate's fast path takes a *bufio.Reader
	open     bool          // a data stream (an entry's data or one large object) is being read
	started  bool          // its decompressor has been set up
	dec      io.Reader
	zr       io.ReadCloser // reused across blocks
	zs       *zstd.Decoder
	blobsEnd bool // the current BLOBS block's terminating zero OID was read
}

// Blocks returns a reader of the data blocks on r, which must be where ReadTOC left it.
func (a *Archive) Blocks(r *bufio.Reader) *Blocks {
	b := &Blocks{a: a, p: &prim{r: r, intSize: a.IntSize, offSize: a.OffSize}}
	b.chunks.p = b.p
	b.in = bufio.NewReaderSize(onlyReader{&b.chunks}, 64<<10)
	return b
}

// Count is the number of blocks Next has returned.
func (b *Blocks) Count() int { return b.blocks }

// Close releases the decompressors.
func (b *Blocks) Close() {
	if b.zs != nil {
		b.zs.Close()
		b.zs = nil
	}
}

// Next finishes the current block (reading what is left of it, decompressed, so that
// damage anywhere is found) and returns the next one; io.EOF at the archive's end.
func (b *Blocks) Next() (*Block, error) {
	if err := b.finish(); err != nil {
		return nil, err
	}
	typ, err := b.p.r.ReadByte()
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, b.chunks.fail(err)
	}
	if typ != blockData && typ != blockBlobs {
		return nil, errorf(ErrCorrupt, "unknown data block type %d after %d blocks", typ, b.blocks)
	}
	id, err := b.p.int()
	if err != nil {
		return nil, b.chunks.fail(err)
	}
	e := b.a.byID[id]
	if e == nil {
		return nil, errorf(ErrCorrupt, "data block for entry %d, which is not in the table of contents", id)
	}
	b.blocks++
	b.cur = &Block{Entry: e, Blobs: typ == blockBlobs}
	b.blobsEnd = false
	if !b.cur.Blobs {
		b.startStream()
	}
	return b.cur, nil
}

// NextBlob moves to the next large object of a BLOBS block and returns its OID; Read then
// reads its data. io.EOF when the block has no more.
func (b *Blocks) NextBlob() (uint32, error) {
	if b.cur == nil || !b.cur.Blobs {
		return 0, errors.New("pgarchive: NextBlob outside a BLOBS block")
	}
	if b.blobsEnd {
		return 0, io.EOF
	}
	if err := b.drainStream(); err != nil {
		return 0, err
	}
	oid, err := b.p.int()
	if err != nil {
		return 0, b.chunks.fail(err)
	}
	if oid == 0 {
		b.blobsEnd = true
		return 0, io.EOF
	}
	b.startStream()
	// OIDs above 2^31 are written as negative C ints.
	return uint32(int32(oid)), nil
}

// Read reads the current data stream: a TABLE DATA block's data, or the current large
// object's, decompressed. io.EOF at its end.
func (b *Blocks) Read(p []byte) (int, error) {
	if !b.open {
		return 0, io.EOF
	}
	if !b.started {
		if err := b.startDecompressor(); err != nil {
			return 0, err
		}
	}
	n, err := b.dec.Read(p)
	if err == io.EOF {
		// The compressed stream ended: what is left of the chunks must be nothing.
		if derr := b.chunks.drain(); derr != nil {
			return n, derr
		}
		b.open = false
		return n, io.EOF
	}
	if err != nil {
		return n, b.decompressErr(err)
	}
	return n, nil
}

func (b *Blocks) startStream() {
	b.chunks.left, b.chunks.done = 0, false
	b.open, b.started = true, false
}

func (b *Blocks) startDecompressor() error {
	b.started = true
	var err error
	switch b.a.Compression {
	case "none":
		b.dec = &b.chunks
	case "gzip":
		b.in.Reset(onlyReader{&b.chunks})
		if b.zr == nil {
			b.zr, err = zlib.NewReader(b.in)
		} else {
			err = b.zr.(zlib.Resetter).Reset(b.in, nil)
		}
		b.dec = b.zr
	case "zstd":
		b.in.Reset(onlyReader{&b.chunks})
		if b.zs == nil {
			b.zs, err = zstd.NewReader(b.in, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		} else {
			err = b.zs.Reset(b.in)
		}
		b.dec = b.zs
	default:
		return errorf(ErrUnsupported, "data blocks compressed with %s", b.a.Compression)
	}
	if err != nil {
		return b.decompressErr(err)
	}
	return nil
}

// decompressErr tells the stream's own errors (passed on as they are) from damage found
// by the decompressor.
func (b *Blocks) decompressErr(err error) error {
	var ae *Error
	switch {
	case b.chunks.err != nil:
		return b.chunks.err
	case errors.As(err, &ae):
		return err
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(ErrCorrupt, "a data block's compressed stream ends early")
	}
	return errorf(ErrCorrupt, "a data block does not decompress: %v", err)
}

// drainStream reads what is left of the current data stream.
func (b *Blocks) drainStream() error {
	if !b.open {
		return nil
	}
	if b.a.Compression != "none" && b.a.Compression != "gzip" && b.a.Compression != "zstd" {
		// Data this reader cannot decompress is skipped, not checked.
		b.open = false
		return b.chunks.drain()
	}
	_, err := io.Copy(io.Discard, onlyReader{b})
	return err
}

// finish reads what is left of the current block.
func (b *Blocks) finish() error {
	if b.cur == nil {
		return nil
	}
	if err := b.drainStream(); err != nil {
		return err
	}
	if b.cur.Blobs {
		for {
			if _, err := b.NextBlob(); err == io.EOF {
				break
			} else if err != nil {
				return err
			}
		}
	}
	b.cur = nil
	return nil
}

// onlyReader hides every method but Read (io.Copy would use WriterTo otherwise).
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// chunkReader reads one data stream's chunks (a length, then that many bytes; a zero
// length ends it) as one run of bytes.
type chunkReader struct {
	p    *prim
	left int  // bytes left in the current chunk
	done bool // the zero length was read
	err  error
}

// fail turns an end of input into ErrTruncated and remembers an error of the stream
// underneath, so that a decompressor's report of it is not taken for damage.
func (c *chunkReader) fail(err error) error {
	var ae *Error
	switch {
	case errors.As(err, &ae):
		return err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(ErrTruncated, "archive ends inside a data block")
	}
	if c.err == nil {
		c.err = err
	}
	return err
}

func (c *chunkReader) next() error {
	for c.left == 0 {
		if c.done {
			return io.EOF
		}
		n, err := c.p.int()
		if err != nil {
			return c.fail(err)
		}
		if n < 0 {
			return errorf(ErrCorrupt, "data chunk of %d bytes", n)
		}
		if n == 0 {
			c.done = true
			return io.EOF
		}
		c.left = n
	}
	return nil
}

func (c *chunkReader) Read(b []byte) (int, error) {
	if err := c.next(); err != nil {
		return 0, err
	}
	n, err := c.p.r.Read(b[:min(len(b), c.left)])
	c.left -= n
	if err != nil && n == 0 {
		return 0, c.fail(err)
	}
	return n, nil
}

// drain skips the rest of the chunks.
func (c *chunkReader) drain() error {
	for {
		if err := c.next(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		n, err := c.p.r.Discard(c.left)
		c.left -= n
		if err != nil {
			return c.fail(err)
		}
	}
}

// RowCounter counts the rows of COPY text data written to it: one a line, up to the
// line "\." that pg_dump writes after them.
type RowCounter struct {
	newlines int64
	size     int64
	tail     [8]byte // the last bytes written, right-aligned
}

func (c *RowCounter) Write(p []byte) (int, error) {
	c.newlines += int64(bytes.Count(p, []byte{'\n'}))
	c.size += int64(len(p))
	if len(p) >= len(c.tail) {
		copy(c.tail[:], p[len(p)-len(c.tail):])
	} else {
		copy(c.tail[:], c.tail[len(p):])
		copy(c.tail[len(c.tail)-len(p):], p)
	}
	return len(p), nil
}

// Rows is the number of rows written so far.
func (c *RowCounter) Rows() int64 {
	tail := c.tail[len(c.tail)-int(min(c.size, int64(len(c.tail)))):]
	trailing := len(tail) - len(bytes.TrimRight(tail, "\n"))
	body := tail[:len(tail)-trailing]
	if bytes.HasSuffix(body, []byte(`\.`)) && (len(body) == 2 && c.size == int64(len(tail)) || bytes.HasSuffix(body, []byte("\n\\."))) {
		return c.newlines - int64(trailing)
	}
	if trailing == 0 && c.size > 0 {
		return c.newlines + 1 // a last row without its newline
	}
	return c.newlines
}

// Rows counts the rows of COPY text data.
func Rows(data []byte) int64 {
	var c RowCounter
	c.Write(data)
	return c.Rows()
}

// CountRows reads every remaining block to the end of the archive, decompressing each,
// and counts the rows of each TABLE DATA entry's COPY data, by dump ID. An entry whose
// data this reader cannot decompress, or that is not COPY data, counts -1. Every entry
// that has data must have its block: an archive cut at a block's end is truncated too.
func (b *Blocks) CountRows() (map[int]int64, error) {
	rows := map[int]int64{}
	seen := map[int]bool{}
	buf := make([]byte, 256<<10)
	for {
		blk, err := b.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return rows, err
		}
		seen[blk.Entry.ID] = true
		if blk.Blobs || blk.Entry.Desc != "TABLE DATA" {
			continue // read and checked by the next Next
		}
		if _, err := ParseCopy(blk.Entry.CopyStmt); err != nil {
			rows[blk.Entry.ID] = -1
			continue
		}
		var c RowCounter
		n := int64(0)
		for {
			k, err := b.Read(buf)
			c.Write(buf[:k])
			if err == io.EOF {
				n = c.Rows()
				break
			}
			if errors.Is(err, ErrUnsupported) {
				n = -1
				break
			}
			if err != nil {
				return rows, err
			}
		}
		rows[blk.Entry.ID] = n
	}
	if missing := b.a.missing(seen); missing > 0 {
		return rows, errorf(ErrTruncated, "archive ends before the data of %d of its entries", missing)
	}
	return rows, nil
}

// missing counts the entries with data that have no block among seen.
func (a *Archive) missing(seen map[int]bool) int {
	n := 0
	for _, e := range a.Entries {
		if e.HadDumper && e.DataState != NoData && !seen[e.ID] {
			n++
		}
	}
	return n
}
