package recovery

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"drconsole/internal/gpgtest"
)

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	b[0] = 0x42 // not by chance a known magic number
	return b
}

func newOtherKey(t *testing.T) string {
	return gpgtest.NewKey(t, "Someone Else", "").SecretFile
}

func (f *fixture) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func (f *fixture) mangle(t *testing.T, from, to string, change func([]byte) []byte) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(f.dir, from))
	if err != nil {
		t.Fatal(err)
	}
	return f.write(t, to, change(data))
}
