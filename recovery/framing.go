package recovery

import "io"

// framing follows the OpenPGP packet framing of the raw stream (headers and body
// lengths, partial bodies included) without decrypting anything, so that when
// decryption fails we can tell a file that was cut short from one that was damaged:
// go-crypto reports both as a parsing error.
type framing struct {
	r io.Reader

	state     int    // what the next byte is
	lenBytes  []byte // new-format length octets collected so far
	need      int    // length octets needed
	remaining int64  // body bytes left in the current packet or chunk
	partial   bool   // the current chunk is a partial body: another length follows
	toEOF     bool   // old-format indeterminate length: the body runs to the end
	eof       bool
	srcErr    error // the source's own failure (object changed, location unreachable, cancel)
}

const (
	frameHeader = iota
	frameNewLen
	frameOldLen
	frameBody
)

func newFraming(r io.Reader) *framing { return &framing{r: r} }

func (f *framing) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	f.scan(p[:n])
	if err == io.EOF {
		f.eof = true
	} else if err != nil && f.srcErr == nil {
		// go-crypto replaces errors from below with "parsing error": keep the real one.
		f.srcErr = err
	}
	return n, err
}

// truncated reports whether the stream ended inside a packet.
func (f *framing) truncated() bool {
	if !f.eof || f.toEOF {
		return false
	}
	return f.state != frameHeader || f.partial
}

func (f *framing) scan(b []byte) {
	for len(b) > 0 {
		switch f.state {
		case frameHeader:
			if f.toEOF {
				return
			}
			tag := b[0]
			b = b[1:]
			if tag&0x80 == 0 {
				f.toEOF = true // not OpenPGP framing; nothing more to learn
				return
			}
			f.lenBytes = f.lenBytes[:0]
			if tag&0x40 != 0 {
				f.state, f.need = frameNewLen, 0
			} else {
				switch tag & 3 {
				case 0:
					f.state, f.need = frameOldLen, 1
				case 1:
					f.state, f.need = frameOldLen, 2
				case 2:
					f.state, f.need = frameOldLen, 4
				default:
					f.toEOF = true
					return
				}
			}
		case frameOldLen:
			f.lenBytes = append(f.lenBytes, b[0])
			b = b[1:]
			if len(f.lenBytes) == f.need {
				var l int64
				for _, c := range f.lenBytes {
					l = l<<8 | int64(c)
				}
				f.startBody(l, false)
			}
		case frameNewLen:
			f.lenBytes = append(f.lenBytes, b[0])
			b = b[1:]
			o1 := f.lenBytes[0]
			switch {
			case o1 < 192:
				f.startBody(int64(o1), false)
			case o1 < 224:
				if len(f.lenBytes) == 2 {
					f.startBody(int64(o1-192)<<8+int64(f.lenBytes[1])+192, false)
				}
			case o1 == 255:
				if len(f.lenBytes) == 5 {
					l := int64(f.lenBytes[1])<<24 | int64(f.lenBytes[2])<<16 | int64(f.lenBytes[3])<<8 | int64(f.lenBytes[4])
					f.startBody(l, false)
				}
			default:
				f.startBody(int64(1)<<(o1&0x1f), true)
			}
		case frameBody:
			k := int64(len(b))
			if k > f.remaining {
				k = f.remaining
			}
			f.remaining -= k
			b = b[k:]
			if f.remaining == 0 {
				f.endBody()
			}
		}
	}
}

func (f *framing) startBody(l int64, partial bool) {
	f.partial = partial
	f.remaining = l
	f.lenBytes = f.lenBytes[:0]
	f.state = frameBody
	if l == 0 {
		f.endBody()
	}
}

func (f *framing) endBody() {
	if f.partial {
		f.state = frameNewLen // the next chunk's length follows
	} else {
		f.state = frameHeader
	}
}
