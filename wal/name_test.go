package wal

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func TestKind(t *testing.T) {
	for name, want := range map[string]string{
		"000000010000000000000001":                 KindSegment,
		"00000002.history":                         KindHistory,
		"000000010000000000000002.00000028.backup": KindBackup,
		"000000010000000000000003.partial":         KindPartial,
	} {
		if got, err := Kind(name); err != nil || got != want {
			t.Errorf("Kind(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, bad := range []string{"", "RECOVERYXLOG", "../000000010000000000000001", "00000001000000000000000g", "000000010000000000000001\n", "0000000100000000000000011"} {
		if _, err := Kind(bad); !errors.Is(err, ErrName) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Kind(%q): %v, want ErrName on one line", bad, err)
		}
	}
}

func TestParseStored(t *testing.T) {
	seg := "000000010000000000000001"
	sum := strings.Repeat("ab", sumLen/2)
	for obj, want := range map[string]struct {
		ok  bool
		sum string
	}{
		seg + "-" + sum + ".zst.gpg":  {true, sum},
		seg + "-" + sum + ".zst":      {true, sum},
		seg:                           {true, ""},
		seg + ".gz":                   {true, ""},
		seg + ".00000028.backup":      {false, ""}, // another file that starts alike
		seg + ".partial":              {false, ""},
		seg + "-" + sum[:10] + ".zst": {false, ""},
		seg + "-" + strings.ToUpper(sum) + ".zst": {false, ""},
	} {
		st, ok := parseStored(obj, seg)
		if ok != want.ok || st.sum != want.sum {
			t.Errorf("parseStored(%q) = %q, %v; want %q, %v", obj, st.sum, ok, want.sum, want.ok)
		}
	}
}

func TestNextSegment(t *testing.T) {
	s, _ := parseSegment("0000000100000001000000FF")
	if got := s.next(16 << 20).String(); got != "000000010000000200000000" {
		t.Errorf("after 0000000100000001000000FF (16 MiB): %s", got)
	}
	s, _ = parseSegment("000000010000000100000003")
	if got := s.next(1 << 30).String(); got != "000000010000000200000000" {
		t.Errorf("after 000000010000000100000003 (1 GiB): %s", got)
	}
}

// checkSegment takes a segment whose header says what its name says, and refuses one
// stored under another name, cut short, or with no header.
func TestCheckSegment(t *testing.T) {
	head := func(pageAddr uint64, segSize uint32) []byte {
		b := make([]byte, headerLen)
		binary.LittleEndian.PutUint16(b[0:], 0xD110)
		binary.LittleEndian.PutUint16(b[2:], 0x0002)
		binary.LittleEndian.PutUint64(b[8:], pageAddr)
		binary.LittleEndian.PutUint32(b[32:], segSize)
		binary.LittleEndian.PutUint32(b[36:], 8192)
		return b
	}
	const mib16 = 16 << 20
	if err := checkSegment("000000020000000100000003", head(1<<32+3*mib16, mib16), mib16); err != nil {
		t.Errorf("a good segment: %v", err)
	}
	for what, c := range map[string]struct {
		head []byte
		size int64
	}{
		"another segment's content": {head(1<<32+4*mib16, mib16), mib16},
		"cut short":                 {head(1<<32+3*mib16, mib16), mib16 - 8192},
		"no long header":            {make([]byte, headerLen), mib16},
		"a size its header denies":  {head(1<<32+3*mib16, 1<<30), mib16},
	} {
		if err := checkSegment("000000020000000100000003", c.head, c.size); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
	if err := checkSegment("00000002.history", []byte("1\t0/3000060\tno recovery target specified\n"), 40); err != nil {
		t.Errorf("a history file is not a segment: %v", err)
	}
}

func TestSegmentPrev(t *testing.T) {
	for _, size := range []int64{1 << 20, 16 << 20, 1 << 30} {
		for _, s := range []segment{{1, 0, 1}, {1, 1, 0}, {2, 7, 3}, {1, 0, uint32((1<<32)/size) - 1}} {
			p, ok := s.next(size).prev(size)
			if !ok || p != s {
				t.Errorf("%d-byte segments: prev of next of %v is %v %v", size, s, p, ok)
			}
		}
	}
	if _, ok := (segment{1, 0, 0}).prev(16 << 20); ok {
		t.Error("the first segment of the WAL has one before it")
	}
}
