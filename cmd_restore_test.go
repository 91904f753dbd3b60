package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"drconsole/checklists"
)

// A restore shows every table's rows after its checks, the matching ones too, and one
// that lost a row between the load and the checks stands out: on stderr, in --json, in
// the journal and in the incident's report. The row is deleted in the scratch copy while
// the restore is held at its checks (a -tags faultpoints build).
func TestRestoreShowsRowsOfEveryTable(t *testing.T) {
	r := newFaultRig(t)
	for _, asJSON := range []bool{false, true} {
		t.Run(fmt.Sprintf("json=%v", asJSON), func(t *testing.T) {
			live := fmt.Sprintf("live_rows_%v", asJSON)
			r.c.Exec(t, "postgres", "CREATE DATABASE "+live+" TEMPLATE "+r.damaged)
			state := t.TempDir()
			var extra []string
			if asJSON {
				extra = append(extra, "--json")
			}
			p := r.startRestore(t, r.env(live, state, "checks"), extra...)
			p.waitLine(t, "faultpoint checks: waiting", 2*time.Minute)
			scratch := r.databasesLike(t, live+"_restore_")
			if len(scratch) != 1 {
				t.Fatalf("scratch databases: %v", scratch)
			}
			r.c.Exec(t, scratch[0], `DELETE FROM "Guild" WHERE id = 7`)
			p.cmd.Process.Signal(syscall.SIGUSR1)
			if code := p.exit(t); code != exitChecks {
				t.Fatalf("exit %d, want %d:\n%s", code, exitChecks, p.stderr.String())
			}
			// The backup's rows; the copy lost one of "Guild"; the damaged live database has
			// no "ApiKey" and half the events.
			want := []checklists.TableRows{
				{Name: "public.ApiKey", Archive: 80, Restored: 80, Live: 0, State: "ok"},
				{Name: "public.Event", Archive: 300000, Restored: 300000, Live: 150000, State: "ok"},
				{Name: "public.Guild", Archive: 50, Restored: 49, Live: 50, State: "differs"},
				{Name: "public.Session", Archive: 0, Restored: 0, Live: 0, State: "ok"},
				{Name: "public.User", Archive: 200, Restored: 200, Live: 200, State: "ok"},
			}
			if asJSON {
				var out struct {
					Result string
					Rows   []checklists.TableRows
				}
				if err := json.Unmarshal([]byte(p.stdout.String()), &out); err != nil {
					t.Fatalf("--json: %v\n%s", err, p.stdout.String())
				}
				if got, _ := json.Marshal(out.Rows); string(got) != mustJSON(t, want) || out.Result != checklists.ResultFailed {
					t.Errorf("--json rows (result %s):\n got %s\nwant %s", out.Result, got, mustJSON(t, want))
				}
			} else {
				wantOut := "rows of every table:\n" +
					"            table            archive  restored      live\n" +
					"  ok        public.ApiKey         80        80         0\n" +
					"  ok        public.Event      300000    300000    150000\n" +
					"  DIFFERS   public.Guild          50        49        50\n" +
					"  ok        public.Session         0         0         0\n" +
					"  ok        public.User          200       200       200\n" +
					"  1 of 5 tables DIFFER from the archive: public.Guild\n"
				if out := p.stderr.String(); !strings.Contains(out, wantOut) {
					t.Errorf("stderr lacks\n%s\nin:\n%s", wantOut, out)
				}
			}
			// The journal has them, and the report shows them.
			journals, _ := filepath.Glob(filepath.Join(state, "drconsole", "incidents", "*.jsonl"))
			if len(journals) != 1 {
				t.Fatalf("journals: %v", journals)
			}
			inc, _, err := checklists.ReadJournal(journals[0])
			if err != nil {
				t.Fatal(err)
			}
			if got := mustJSON(t, inc.Restore().Rows); got != mustJSON(t, want) {
				t.Errorf("journaled rows:\n got %s\nwant %s", got, mustJSON(t, want))
			}
			env := map[string]string{"XDG_STATE_HOME": state}
			md, errb, code := runCLI(t, env, "report")
			if code != 0 {
				t.Fatalf("report: exit %d: %s", code, errb)
			}
			for _, line := range []string{
				"**1 of 5 tables did not hold the archive's rows:** public.Guild.",
				"| public.Event | 300000 | 300000 | 150000 | ok |",
				"| **public.Guild** | 50 | 49 | 50 | **differs** |",
			} {
				if !strings.Contains(md, line) {
					t.Errorf("report lacks %q:\n%s", line, md)
				}
			}
			os.RemoveAll(state)
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
