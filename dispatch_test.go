package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The command line routes a flag's value as a value, never as a subcommand, and the
// console is what runs without one.
func TestCommandLineRouting(t *testing.T) {
	a := &app{stdin: strings.NewReader(""), getenv: func(string) string { return "" }}
	cases := []struct{ args, cmd string }{
		{"", "drconsole"},
		{"--gpg-key /tmp/k.asc", "drconsole"},
		{"--gpg-key=/tmp/k.asc --drill", "drconsole"},
		{"--gpg-key k.asc --signer-key job.asc", "drconsole"},
		{"--config c.yaml backups --json", "drconsole backups"},
		{"restore latest --yes", "drconsole restore"},
		{"--state-dir /s restore --gpg-key k latest", "drconsole restore"},
		{"console --drill", "drconsole console"},
		{"runbook validate f.yaml", "drconsole runbook validate"},
	}
	for _, c := range cases {
		root := a.command()
		cmd, _, err := root.Find(strings.Fields(c.args))
		if err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if got := cmd.CommandPath(); got != c.cmd {
			t.Errorf("%q runs %q, want %q", c.args, got, c.cmd)
		}
	}
}

func TestMistypedSubcommandIsAUsageError(t *testing.T) {
	_, errb, code := runCLI(t, nil, "bakups")
	if code != exitUsage || !strings.Contains(errb, `unknown command "bakups"`) || !strings.Contains(errb, "backups") {
		t.Errorf("exit %d, stderr %q", code, errb)
	}
	_, errb, code = runCLI(t, nil, "backups", "--frobnicate")
	if code != exitUsage || !strings.Contains(errb, "--frobnicate") {
		t.Errorf("unknown flag: exit %d, stderr %q", code, errb)
	}
}

// Every subcommand says what it does and documents every flag in -h, and the console's
// -h works as drconsole console -h.
func TestEveryCommandDocumentsItsFlags(t *testing.T) {
	a := &app{stdin: strings.NewReader(""), getenv: func(string) string { return "" }}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Short == "" {
			t.Errorf("%s has no summary", c.CommandPath())
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if strings.TrimSpace(f.Usage) == "" {
				t.Errorf("%s --%s is not documented", c.CommandPath(), f.Name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(a.command())
	for _, args := range [][]string{{"-h"}, {"console", "-h"}, {"restore", "-h"}, {"runbook", "show", "-h"}} {
		out, errb, code := runCLI(t, nil, args...)
		if code != 0 || !strings.Contains(out, "Usage:") || !strings.Contains(out, "Flags:") {
			t.Errorf("%v: exit %d\n%s%s", args, code, out, errb)
		}
	}
	out, _, _ := runCLI(t, nil, "restore", "-h")
	for _, flag := range []string{"--yes", "--target-db", "--from-db", "--no-owner", "--signer-key", "--allow-unsigned", "--backup-dir", "--db-url"} {
		if !strings.Contains(out, flag) {
			t.Errorf("restore -h does not document %s", flag)
		}
	}
}

// Shell completion and the man page come from the same command tree.
func TestCompletionAndManPage(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		out, errb, code := runCLI(t, nil, "completion", shell)
		if code != 0 || !strings.Contains(out, "drconsole") {
			t.Errorf("completion %s: exit %d %s", shell, code, errb)
		}
	}
	out, errb, code := runCLI(t, nil, "man")
	if code != 0 || !strings.Contains(out, ".TH \"DRCONSOLE\" \"1\"") || !strings.Contains(out, "restore") {
		t.Errorf("man: exit %d %s\n%.300s", code, errb, out)
	}
	dir := t.TempDir()
	if _, errb, code := runCLI(t, nil, "man", "--dir", dir); code != 0 {
		t.Fatalf("man --dir: %s", errb)
	}
	if _, err := os.Stat(filepath.Join(dir, "drconsole-restore.1")); err != nil {
		t.Errorf("man --dir wrote no page for restore: %v", err)
	}
}
