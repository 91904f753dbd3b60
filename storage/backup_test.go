package storage

import (
	"testing"
	"time"
)

// Any application's backups are recognised by the backup job's pattern; which of them
// are the application being recovered is up to its prefix.
func TestParseNameAnyApplication(t *testing.T) {
	cases := []struct {
		name, prefix string
		kind         Kind
		format       Format
		compression  Compression
		encrypted    bool
	}{
		{"spywatcher_full_20240125_120000.dump.gz.gpg", "spywatcher", KindFull, FormatCustom, CompressionGzip, true},
		{"orders_incremental_20240125_060000.sql.zst", "orders", KindIncremental, FormatPlain, CompressionZstd, false},
		{"my_app.v2_full_20240101_000000.dump", "my_app.v2", KindFull, FormatCustom, CompressionNone, false},
		{"billing-eu_full_20240101_000000.sql.gz", "billing-eu", KindFull, FormatPlain, CompressionGzip, false},
		{"full_20240101_000000.dump", "", KindUnknown, FormatCustom, CompressionNone, false},
		{"_full_20240101_000000.dump", "", KindUnknown, FormatCustom, CompressionNone, false},
		{"orders_full_2024_120000.dump", "", KindUnknown, FormatCustom, CompressionNone, false},
		{"notes.txt", "", KindUnknown, FormatUnknown, CompressionUnknown, false},
	}
	for _, c := range cases {
		b := ParseName(c.name)
		if b.Prefix != c.prefix || b.Kind != c.kind || b.Format != c.format || b.Compression != c.compression || b.Encrypted != c.encrypted {
			t.Errorf("ParseName(%q) = prefix %q kind %s format %s compression %s encrypted %v", c.name, b.Prefix, b.Kind, b.Format, b.Compression, b.Encrypted)
		}
	}
	b := ParseName("orders_full_20240125_120000.dump.gz")
	if !b.Of([]string{"orders"}) || b.Of([]string{"spywatcher"}) || !b.Of(nil) || ParseName("notes.txt").Of(nil) {
		t.Error("Of")
	}
	if want := time.Date(2024, 1, 25, 12, 0, 0, 0, time.UTC); !b.Time.Equal(want) {
		t.Errorf("time %v", b.Time)
	}
}

// latest is the newest full backup of the application, never another's in a shared bucket.
func TestLatestOfTheApplication(t *testing.T) {
	mk := func(name, loc string) Backup {
		b := ParseName(name)
		b.Location = loc
		return b
	}
	cat := Catalog{
		Locations: []LocationStatus{{Name: "primary", Reachable: true}},
		Backups: []Backup{
			mk("spywatcher_full_20240125_130000.dump.gz", "primary"),
			mk("orders_incremental_20240125_120000.dump.gz", "primary"),
			mk("orders_full_20240125_020000.dump.gz", "primary"),
			mk("orders_full_20240124_020000.dump.gz", "primary"),
		},
	}
	b, err := Latest(cat, "orders")
	if err != nil || b.Name != "orders_full_20240125_020000.dump.gz" {
		t.Errorf("Latest(orders) = %s, %v", b.Name, err)
	}
	if _, err := Latest(cat, "billing"); err == nil {
		t.Error("Latest of an application with no backups found one")
	}
	if b, _ := Latest(cat); b.Name != "spywatcher_full_20240125_130000.dump.gz" {
		t.Errorf("Latest of any = %s", b.Name)
	}
}
