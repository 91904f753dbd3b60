package storage

import (
	"bytes"
	"unicode/utf8"
)

// Layer is what the first bytes of a stream are: one wrapping to peel (encryption,
// compression) or the dump itself.
type Layer string

const (
	LayerOpenPGP Layer = "openpgp"
	LayerGzip    Layer = "gzip"
	LayerZstd    Layer = "zstd"
	LayerCustom  Layer = "custom dump" // pg_dump -Fc archive, starts with PGDMP
	LayerSQL     Layer = "sql"         // plain SQL text
	LayerEmpty   Layer = "empty"
	LayerUnknown Layer = "unknown"
)

// SniffLen is how many leading bytes Sniff wants to decide well.
const SniffLen = 512

// Sniff says what a stream is from its first bytes (up to SniffLen of them).
func Sniff(head []byte) Layer {
	switch {
	case len(head) == 0:
		return LayerEmpty
	case bytes.HasPrefix(head, []byte("PGDMP")):
		return LayerCustom
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		return LayerGzip
	case len(head) >= 4 && bytes.Equal(head[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return LayerZstd
	case bytes.HasPrefix(head, []byte("-----BEGIN PGP MESSAGE-----")):
		return LayerOpenPGP
	case isOpenPGPPacket(head):
		return LayerOpenPGP
	case looksLikeSQL(head):
		return LayerSQL
	}
	return LayerUnknown
}

// isOpenPGPPacket recognises the packets an encrypted message starts with: a public-key
// encrypted session key (tag 1), a symmetric-key encrypted session key (tag 3), or,
// rarely, the encrypted data itself (tags 9, 18, 20), in old or new packet format.
func isOpenPGPPacket(head []byte) bool {
	b := head[0]
	if b&0x80 == 0 {
		return false
	}
	var tag byte
	if b&0x40 != 0 {
		tag = b & 0x3f
	} else {
		tag = (b >> 2) & 0x0f
	}
	switch tag {
	case 1, 3, 9, 18, 20:
		return len(head) >= 3
	}
	return false
}

// looksLikeSQL accepts UTF-8 text whose first meaningful line is a comment or an SQL
// statement, which is how pg_dump's plain format (and hand-written dumps) begin.
func looksLikeSQL(head []byte) bool {
	// a multi-byte rune may be cut at the end of head
	text := head
	for i := 0; i < utf8.UTFMax && !utf8.Valid(text) && len(text) > 0; i++ {
		text = text[:len(text)-1]
	}
	if !utf8.Valid(text) || bytes.IndexByte(text, 0) >= 0 {
		return false
	}
	for _, line := range bytes.Split(text, []byte("\n")) {
		line = bytes.TrimSpace(bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")))
		if len(line) == 0 {
			continue
		}
		if bytes.HasPrefix(line, []byte("--")) || bytes.HasPrefix(line, []byte("/*")) || bytes.HasPrefix(line, []byte(`\`)) {
			return true
		}
		word := bytes.ToUpper(bytes.Fields(line)[0])
		for _, kw := range []string{"SET", "SELECT", "CREATE", "BEGIN", "COPY", "INSERT", "ALTER", "DROP", "START", "COMMENT", "GRANT", "REVOKE"} {
			if string(bytes.TrimRight(word, ";")) == kw {
				return true
			}
		}
		return false
	}
	return false
}
