package storage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
locations:
  - name: primary
    bucket: spywatcher-backups
    region: us-east-1
    storage_class: STANDARD_IA
    concurrency: 8
    part_size: 16MiB
  - name: secondary
    type: s3
    bucket: spywatcher-backups-us-west
    prefix: team/
    profile: dr
  - name: minio
    bucket: local-copies
    endpoint: http://127.0.0.1:9000
    path_style: false
    part_size: 512KiB
  - name: local
    path: /var/backups/spywatcher
`), "drconsole.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Locations
	if len(l) != 4 || l[0].Type != "s3" || l[3].Type != "dir" || l[0].PartSize != 16<<20 || l[2].PartSize != 512<<10 ||
		l[0].Concurrency != 8 || l[1].Profile != "dr" || l[2].PathStyle == nil || *l[2].PathStyle || l[0].StorageClass != "STANDARD_IA" {
		t.Errorf("parsed %+v", l)
	}
}

func TestParseConfigErrorsNameTheLine(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"locations:\n  - name: p\n    buckett: x\n", "drconsole.yaml:3: field buckett not found in a location"},
		{"location:\n  - name: p\n", "drconsole.yaml:1: field location not found at the top level"},
		{"locations:\n  - name: p\n    bucket: b\n  - name: p\n    path: /x\n", `drconsole.yaml:4: location "p": the name is used twice`},
		{"locations:\n  - name: p\n", `drconsole.yaml:2: location "p": needs a type`},
		{"locations:\n  - name: p\n    type: s3\n", `drconsole.yaml:2: location "p": type s3 needs a bucket`},
		{"locations:\n  - name: p\n    bucket: b\n    part_size: lots\n", `drconsole.yaml:4: "lots" is not a size`},
		{"locations:\n  - name: p\n    bucket: b/c\n", `is not a bucket name`},
		{"locations: [\n", "drconsole.yaml:"},
	} {
		_, err := ParseConfig([]byte(c.yaml), "drconsole.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseConfig(%q) = %v; want %q", c.yaml, err, c.want)
		}
	}
}

func TestConfigPathOrder(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	xdg := filepath.Join(dir, "xdg")
	os.MkdirAll(filepath.Join(xdg, "drconsole"), 0o700)
	write := func(p string) string {
		os.WriteFile(p, []byte("locations: []\n"), 0o600)
		return p
	}
	env := map[string]string{"XDG_CONFIG_HOME": xdg}
	getenv := func(k string) string { return env[k] }

	if p, err := ConfigPath("", getenv); err != nil || (p != "" && p != "/etc/drconsole/config.yaml") {
		t.Errorf("no file: %q, %v", p, err)
	}
	xdgFile := write(filepath.Join(xdg, "drconsole", "config.yaml"))
	if p, _ := ConfigPath("", getenv); p != xdgFile {
		t.Errorf("got %q; want the XDG file", p)
	}
	write("drconsole.yaml")
	if p, _ := ConfigPath("", getenv); p != "drconsole.yaml" {
		t.Errorf("got %q; want ./drconsole.yaml", p)
	}
	env["DRCONSOLE_CONFIG"] = write(filepath.Join(dir, "env.yaml"))
	if p, _ := ConfigPath("", getenv); p != env["DRCONSOLE_CONFIG"] {
		t.Errorf("got %q; want $DRCONSOLE_CONFIG", p)
	}
	explicit := write(filepath.Join(dir, "explicit.yaml"))
	if p, _ := ConfigPath(explicit, getenv); p != explicit {
		t.Errorf("got %q; want the explicit file", p)
	}
	if _, err := ConfigPath(filepath.Join(dir, "missing.yaml"), getenv); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Errorf("a missing explicit file: %v", err)
	}
	env["DRCONSOLE_CONFIG"] = filepath.Join(dir, "gone.yaml")
	if _, err := ConfigPath("", getenv); err == nil || !strings.Contains(err.Error(), "DRCONSOLE_CONFIG") {
		t.Errorf("a missing $DRCONSOLE_CONFIG file: %v", err)
	}
}

func TestLoadConfigFallsBackToTheEnvironment(t *testing.T) {
	t.Chdir(t.TempDir())
	env := map[string]string{"XDG_CONFIG_HOME": t.TempDir(), "S3_BUCKET": "spywatcher-backups"}
	cfg, err := LoadConfig("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != "" && cfg.File != "/etc/drconsole/config.yaml" {
		t.Fatalf("read %s", cfg.File)
	}
	if cfg.File == "" && (len(cfg.Locations) != 2 || cfg.Locations[0].Bucket != "spywatcher-backups" || cfg.Locations[1].Path != DefaultDir) {
		t.Errorf("environment config = %+v", cfg.Locations)
	}
}
