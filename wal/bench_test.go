package wal

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"drconsole/recovery"
	"drconsole/storage"
)

// BenchmarkFetchSegment is one 16 MiB segment, encrypted and compressed, fetched from a
// directory location: the CPU a fetch costs, without the network.
func BenchmarkFetchSegment(b *testing.B) {
	ent, err := openpgp.NewEntity("Bench", "", "bench@example.com", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		b.Fatal(err)
	}
	loc := storage.WALOf(storage.NewDir("local", b.TempDir()))
	name := "000000010000000000000001"
	src := filepath.Join(b.TempDir(), name)
	seg := fakeSegment(&testing.T{}, name, 16<<20)
	os.WriteFile(src, seg, 0o600)
	p := &Pusher{Locations: []storage.Folder{loc}, Recipients: openpgp.EntityList{ent}}
	if _, err := p.Push(context.Background(), src); err != nil {
		b.Fatal(err)
	}
	f := &Fetcher{Locations: []storage.Folder{loc}, Keys: &recovery.Keys{Entities: openpgp.EntityList{ent}}}
	dest := filepath.Join(b.TempDir(), "RECOVERYXLOG")
	b.SetBytes(16 << 20)
	for b.Loop() {
		if _, err := f.Fetch(context.Background(), name, dest); err != nil {
			b.Fatal(err)
		}
	}
}
