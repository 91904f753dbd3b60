package main

import (
	"strings"
	"testing"
)

func TestSubcommandSkipsFlagValues(t *testing.T) {
	cases := []struct{ args, name, rest string }{
		{"", "", ""},
		{"--gpg-key /tmp/k.asc", "", "--gpg-key /tmp/k.asc"},
		{"--gpg-key=/tmp/k.asc --drill", "", "--gpg-key=/tmp/k.asc --drill"},
		{"--gpg-key k.asc --signer-key job.asc", "", "--gpg-key k.asc --signer-key job.asc"},
		{"--config c.yaml backups --json", "backups", "--config c.yaml --json"},
		{"restore latest --yes", "restore", "latest --yes"},
		{"--state-dir /s restore --gpg-key k latest", "restore", "--state-dir /s --gpg-key k latest"},
		{"bakups", "bakups", ""},
		{"-- backups", "", "-- backups"},
	}
	for _, c := range cases {
		name, rest := subcommand(strings.Fields(c.args))
		if name != c.name || strings.Join(rest, " ") != c.rest {
			t.Errorf("subcommand(%q) = %q, %q; want %q, %q", c.args, name, strings.Join(rest, " "), c.name, c.rest)
		}
	}
}

func TestMistypedSubcommandIsAUsageError(t *testing.T) {
	_, errb, code := runCLI(t, nil, "bakups")
	if code != exitUsage || !strings.Contains(errb, `unknown subcommand "bakups"`) {
		t.Errorf("exit %d, stderr %q", code, errb)
	}
}
