package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func newManCmd(a *app) *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "man [flags]",
		Short: "write the man pages",
		Example: `  drconsole man | man -l -
  drconsole man --dir /usr/local/share/man/man1`,
		Args: noArgs(""),
		RunE: func(c *cobra.Command, _ []string) error {
			root := c.Root()
			header := &doc.GenManHeader{Title: "DRCONSOLE", Section: "1", Source: "drconsole " + version, Manual: "drconsole manual"}
			root.DisableAutoGenTag = true
			if dir == "" {
				return doc.GenMan(root, header, a.stdout)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("man --dir: %w", err)
			}
			return doc.GenManTree(root, header, dir)
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "write a page for every subcommand into `dir`ectory instead")
	return c
}
