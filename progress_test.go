package main

import (
	"bytes"
	"strings"
	"testing"

	"drconsole/recovery"
)

// On a terminal the progress line follows the parallel engine: its phase, the rows of the
// table being loaded (kept across samples that do not carry them) and the indexes built.
func TestProgressLineShowsPhaseRowsAndIndexes(t *testing.T) {
	var out bytes.Buffer
	p := &progressPrinter{w: &out, tty: true, verb: "restore"}
	line := func() string { // the line as the terminal shows it now
		s := out.String()
		return s[strings.LastIndex(s, "\r")+1:]
	}
	steps := []struct {
		e    recovery.Event
		want string
	}{
		{recovery.Event{Stage: recovery.StageStream, Phase: "pre-data", TablesTotal: 3, Message: "parallel engine: 4 connections"}, ""},
		{recovery.Event{Stage: recovery.StageStream, Read: 1 << 20, Size: 8 << 20}, "[pre-data]  tables 0/3"},
		{recovery.Event{Stage: recovery.StageStream, Phase: "load", Table: "public.Event", Rows: 1234567, TablesTotal: 3, IndexesTotal: 5}, "[load]  tables 0/3 public.Event 1,234,567 rows  indexes 0/5"},
		{recovery.Event{Stage: recovery.StageStream, Read: 2 << 20, Size: 8 << 20, TablesTotal: 3, Table: "public.Event"}, "[load]  tables 0/3 public.Event 1,234,567 rows  indexes 0/5"},
		{recovery.Event{Stage: recovery.StageStream, Phase: "load", Table: "public.User", Rows: 500, TablesDone: 1, TablesTotal: 3, IndexesDone: 2, IndexesTotal: 5}, "tables 1/3 public.User 500 rows  indexes 2/5"},
		{recovery.Event{Stage: recovery.StageStream, Phase: "post-data", TablesDone: 3, TablesTotal: 3, IndexesDone: 4, IndexesTotal: 5}, "[post-data]  tables 3/3  indexes 4/5"},
	}
	for i, st := range steps {
		p.Report(st.e)
		if got := line(); !strings.Contains(got, st.want) {
			t.Fatalf("after event %d the line is %q, want it to hold %q", i, got, st.want)
		}
	}
	if strings.Contains(line(), "public.User") {
		t.Errorf("after the load the line still names a table: %q", line())
	}
	// Piped (cron mail), only drconsole's own messages: no figures at all.
	out.Reset()
	p = &progressPrinter{w: &out, tty: false, verb: "restore"}
	for _, st := range steps {
		p.Report(st.e)
	}
	if got := out.String(); got != "restore: parallel engine: 4 connections\n" {
		t.Errorf("piped output: %q", got)
	}
}
