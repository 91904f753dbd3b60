package recovery

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/s2k"
)

// A wrong passphrase on a symmetric backup decrypts to random garbage, which go-crypto
// sometimes parses as a packet (it no longer does the quick check). Whatever the garbage
// happens to be, the operator must hear "wrong passphrase", never "corrupt backup".
func TestWrongSymmetricPassphraseIsAlwaysAWrongKey(t *testing.T) {
	payload := bytes.Repeat([]byte("PGDMP custom archive bytes "), 200)
	for _, compress := range []packet.CompressionAlgo{packet.CompressionNone, packet.CompressionZLIB} {
		for i := 0; i < 1000; i++ {
			var buf bytes.Buffer
			cfg := &packet.Config{DefaultCompressionAlgo: compress, S2KConfig: &s2k.Config{S2KMode: s2k.IteratedSaltedS2K, S2KCount: 1024}}
			w, err := openpgp.SymmetricallyEncrypt(&buf, []byte("right"), &openpgp.FileHints{IsBinary: true}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(payload)
			w.Close()
			st, err := Unwrap(bytes.NewReader(buf.Bytes()), &Keys{Passphrase: []byte(fmt.Sprintf("wrong %d", i))})
			if err == nil {
				_, err = io.Copy(io.Discard, st.Reader)
				st.Close()
			}
			if !errors.Is(err, ErrWrongKey) {
				t.Fatalf("compression %v, try %d: err = %v, want a wrong passphrase", compress, i, err)
			}
		}
	}
}
