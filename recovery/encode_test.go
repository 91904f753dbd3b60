package recovery

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"

	"drconsole/internal/gpgtest"
	"drconsole/storage"
)

// TestEncodeIsReadByGPGAndByVerify: what drconsole backup writes (gzip, then OpenPGP to a
// public key) decrypts with the real gpg and verifies with drconsole.
func TestEncodeIsReadByGPGAndByVerify(t *testing.T) {
	key := gpgtest.NewKey(t, "Enc", "")
	recipients, err := ReadRecipientFile(key.PublicFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	payload := []byte("-- PostgreSQL database dump\nSELECT 1;\n" + strings.Repeat("INSERT INTO t VALUES (1);\n", 5000))
	var out bytes.Buffer
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	if err := encode(&out, bytes.NewReader(payload), recipients, cmd, &stderr); err != nil {
		t.Fatal(err)
	}
	name := "spywatcher_full_20240101_000000.sql.gz.gpg"
	if err := os.WriteFile(filepath.Join(dir, name), out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	key.Decrypt(t, filepath.Join(dir, name), filepath.Join(dir, "x.sql.gz"))
	got, err := exec.Command("gunzip", "-c", filepath.Join(dir, "x.sql.gz")).Output()
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("gpg -d | gunzip: %v, %d bytes, want %d", err, len(got), len(payload))
	}
	ents, err := ReadKeyFile(key.SecretFile)
	if err != nil {
		t.Fatal(err)
	}
	loc := storage.NewDir("local", dir)
	b, err := loc.Stat(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Inspect(context.Background(), Source{Location: loc, Backup: b}, &Keys{Entities: ents}); err != nil {
		t.Fatalf("inspect: %v", err)
	}
	c, err := Verify(context.Background(), Source{Location: loc, Backup: b}, &Keys{Entities: ents}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Complete || c.Dump != int64(len(payload)) || c.Format != storage.FormatPlain {
		t.Errorf("verify: %+v", c)
	}
	var _ openpgp.EntityList
}
