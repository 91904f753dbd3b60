package main

import (
	"context"
	"fmt"

	"drconsole/recovery"
)

func init() {
	register(&command{
		name:    "check",
		usage:   "check [--db-url URL] [--json]",
		summary: "run the runbook's integrity checks against the live database",
		run:     runCheck,
	})
}

func runCheck(ctx context.Context, a *app, args []string) error {
	c := commands["check"]
	fs := a.flags(c)
	var conn connFlags
	conn.add(fs)
	asJSON := fs.Bool("json", false, "print the checks as JSON on stdout")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("check takes no arguments; name the database with --db-url, DB_NAME or PGDATABASE")
	}
	cn, err := conn.resolve(a)
	if err != nil {
		return err
	}
	if cn.Database == "" {
		return usagef("name the database to check (--db-url, DB_NAME, DATABASE_URL or PGDATABASE)")
	}
	// Reach the database first, so a typo'd name or a down server is one clear line.
	db, err := cn.Connect(ctx, cn.Database)
	if err != nil {
		return err
	}
	db.Close(context.Background())
	results := recovery.RunChecks(ctx, cn, cn.Database, "")
	if *asJSON {
		out := struct {
			Database string                 `json:"database"`
			Server   string                 `json:"server"`
			Checks   []recovery.CheckResult `json:"checks"`
		}{cn.Database, cn.Server(), results}
		if err := writeJSON(a.stdout, out); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(a.stdout, "database %s on %s\n", cn.Database, cn.Server())
		a2 := *a
		a2.stderr = a.stdout
		printChecks(&a2, results)
	}
	if failed := recovery.Failed(results); len(failed) > 0 {
		return fmt.Errorf("%w: %s: %s", recovery.ErrChecksFailed, failed[0].Name, failed[0].Detail)
	}
	return nil
}
