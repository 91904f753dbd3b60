package checklists

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func goldenFile(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update creates it)", err, t.Name())
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (go test -run %s -update rewrites it); got:\n%s", path, t.Name(), got)
	}
}

const (
	reportPassword   = "s3cr3t-Pa55"
	reportPassphrase = "gpg key passphrase 42"
)

// recordRecovery writes the journal of a whole database-corruption recovery.
func recordRecovery(t *testing.T, dir string) *Journal {
	clk := &fakeClock{now: t0}
	j := startTest(t, dir, clk, false)
	j.AddSecret(reportPassphrase)
	step := func(n int, took time.Duration, note string) {
		mustRecord(t, j, Event{Type: EventStepStarted, Step: n})
		clk.Advance(took)
		mustRecord(t, j, Event{Type: EventStepDone, Step: n, Note: note})
	}
	zero, one := 0, 1
	mustRecord(t, j, Event{Type: EventStepStarted, Step: 1})
	clk.Advance(2 * time.Minute)
	mustRecord(t, j, Event{Type: EventCommandRun, Step: 1, Command: "tail -100 /var/log/postgresql/postgresql-15-main.log", ExitCode: &zero, Seconds: 0.04, Output: "ERROR: invalid page in block 4 of relation base/16384/16402\n"})
	clk.Advance(7 * time.Minute)
	mustRecord(t, j, Event{Type: EventStepDone, Step: 1, Note: "index on \"Guild\" corrupt"})
	mustRecord(t, j, Event{Type: EventStepStarted, Step: 2})
	mustRecord(t, j, Event{Type: EventCommandShown, Step: 2, Command: "kubectl scale deployment spywatcher-backend --replicas=0"})
	mustRecord(t, j, Event{Type: EventCommandRun, Step: 2, Command: "kubectl scale deployment spywatcher-backend --replicas=0", ExitCode: &one, Seconds: 1.5, Output: "error: context deadline exceeded"})
	clk.Advance(6 * time.Minute)
	mustRecord(t, j, Event{Type: EventCommandRun, Step: 2, Command: "kubectl scale deployment spywatcher-backend --replicas=0", ExitCode: &zero, Seconds: 2})
	mustRecord(t, j, Event{Type: EventStepDone, Step: 2})
	mustRecord(t, j, Event{Type: EventStepStarted, Step: 3})
	clk.Advance(4 * time.Minute)
	taken := time.Date(2024, 1, 25, 12, 0, 0, 0, time.UTC)
	mustRecord(t, j, Event{Type: EventBackupChosen, Backup: "spywatcher_full_20240125_120000.dump.gz.gpg", Location: "s3://spywatcher-backups/postgres/full/", BackupTime: &taken, Bytes: 3 << 30})
	mustRecord(t, j, Event{Type: EventStepDone, Step: 3})
	mustRecord(t, j, Event{Type: EventStepStarted, Step: 4})
	mustRecord(t, j, Event{Type: EventRestoreStarted, Backup: "spywatcher_full_20240125_120000.dump.gz.gpg",
		Database: "postgres://spywatcher:" + reportPassword + "@db.internal:5432/spywatcher", ScratchDB: "spywatcher_restore_20240125_142100"})
	clk.Advance(time.Minute)
	mustRecord(t, j, Event{Type: EventRestoreProgress, Milestone: "key and archive header verified (passphrase " + reportPassphrase + ")"})
	clk.Advance(40 * time.Minute)
	mustRecord(t, j, Event{Type: EventRestoreProgress, Milestone: "data loaded: 42 tables"})
	mustRecord(t, j, Event{Type: EventCheckResult, Step: 4, Title: `row counts of "User", "Guild", "ApiKey"`, Result: CheckPass, Detail: "users 1204, guilds 88, api_keys 310"})
	mustRecord(t, j, Event{Type: EventCheckResult, Step: 4, Title: "admins present", Result: CheckPass, Detail: "3 admins"})
	mustRecord(t, j, Event{Type: EventCheckResult, Step: 4, Title: `"Session" exists`, Result: CheckFail, Detail: "table missing | expected after migration 42"})
	// A table's name is the backup's words: redacted like any text (here, absurdly, it
	// holds the passphrase).
	mustRecord(t, j, Event{Type: EventRowsCounted, Step: 4, Tables: []TableRows{
		{Name: "public.ApiKey", Archive: 310, Restored: 310, Live: 0, State: "ok"},
		{Name: "public.Guild", Archive: 88, Restored: 88, Live: 88, State: "ok"},
		{Name: "public.User", Archive: 1204, Restored: 1204, Live: 1210, State: "ok"},
		{Name: "public.legacy_blobs", Archive: -1, Restored: 12, Live: 12, State: "uncounted"},
		{Name: "scratch.\"" + reportPassphrase + "\"", Archive: 0, Restored: 0, Live: -1, State: "ok"},
	}})
	clk.Advance(4 * time.Minute)
	mustRecord(t, j, Event{Type: EventRestoreFinished, Result: ResultOK, Bytes: 3 << 30, Seconds: 45 * 60,
		Database: "spywatcher", KeptDB: "spywatcher_pre_restore_20240125_142100"})
	mustRecord(t, j, Event{Type: EventStepDone, Step: 4})
	step(5, 12*time.Minute, "")
	mustRecord(t, j, Event{Type: EventStepSkipped, Step: 6, Note: "restarted by the platform team"})
	mustRecord(t, j, Event{Type: EventStepStarted, Step: 7})
	clk.Advance(5 * time.Minute)
	mustRecord(t, j, Event{Type: EventStepPaused, Step: 7, Note: "SSH dropped"})
	mustRecord(t, j, Event{Type: EventSession, Note: "hung up"})
	clk.Advance(10 * time.Minute)
	mustRecord(t, j, Event{Type: EventSession, Note: "resumed by bob"})
	mustRecord(t, j, Event{Type: EventStepResumed, Step: 7})
	clk.Advance(20 * time.Minute)
	mustRecord(t, j, Event{Type: EventStepDone, Step: 7})
	mustRecord(t, j, Event{Type: EventNote, Who: "bob", Note: "PGPASSWORD=" + reportPassword + " was in the shell history; rotated"})
	step(8, 9*time.Minute, "")
	for i, item := range []string{"Verify all services are operational", "Confirm data integrity", "Document incident"} {
		clk.Advance(time.Minute)
		who := "alice"
		if i == 2 {
			who = "bob"
		}
		mustRecord(t, j, Event{Type: EventChecklistTicked, Title: item, Who: who})
	}
	if err := j.CloseIncident("recovered", "service back"); err != nil {
		t.Fatal(err)
	}
	return j
}

func TestReportGolden(t *testing.T) {
	dir := t.TempDir()
	j := recordRecovery(t, dir)
	inc, warnings, err := ReadJournal(j.Path())
	if err != nil {
		t.Fatal(err)
	}
	r := BuildReport(inc, warnings, inc.Ended.Add(time.Hour))
	md := r.Markdown()
	goldenFile(t, "report.md.golden", []byte(md))
	js, _ := json.MarshalIndent(r, "", "  ")
	goldenFile(t, "report.json.golden", append(js, '\n'))

	if r.RTOMet || r.RTOAchievedMinutes != 123 || *r.RPOAchievedMinutes != 120 || *r.RPOMet {
		t.Errorf("objectives: RTO %v met=%v, RPO %v", r.RTOAchievedMinutes, r.RTOMet, *r.RPOAchievedMinutes)
	}
	if r.Timeline[6].DurationMinutes != 25 || r.Timeline[6].Over != true {
		t.Errorf("paused step 7: %+v", r.Timeline[6])
	}

	// The password given to the restore and the passphrase are in neither the journal nor the report.
	data, _ := os.ReadFile(j.Path())
	for _, secret := range []string{reportPassword, reportPassphrase} {
		for name, text := range map[string]string{"journal": string(data), "markdown": md, "json": string(js)} {
			if strings.Contains(text, secret) {
				t.Errorf("%s contains the secret %q", name, secret)
			}
		}
	}
}

func TestReportOfOpenIncident(t *testing.T) {
	clk := &fakeClock{now: t0}
	j := startTest(t, t.TempDir(), clk, true)
	mustRecord(t, j, Event{Type: EventStepStarted, Step: 1})
	mustRecord(t, j, Event{Type: EventCommandRun, Step: 1, Command: "psql -c 'select 1'", DryRun: true})
	r := BuildReport(j.Incident(), nil, t0.Add(15*time.Minute))
	md := r.Markdown()
	for _, want := range []string{"# Drill report: Database Corruption", "still open at 2024-01-25 14:15:00 UTC", "met so far", "RPO | 1h | unknown", "drill: not run", "- [ ] Verify all services are operational", "**5m over** (running)"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// A table whose restored copy did not hold the archive's rows stands out in the report:
// counted above the table, in bold in it, the matching tables listed beside it.
func TestReportRowsMismatchStandsOut(t *testing.T) {
	clk := &fakeClock{now: t0}
	j := startTest(t, t.TempDir(), clk, false)
	mustRecord(t, j, Event{Type: EventRestoreStarted, Step: 4, Backup: "spywatcher_full_20240125_120000.dump.gz.gpg", Database: "spywatcher", ScratchDB: "spywatcher_restore_20240125_140000"})
	mustRecord(t, j, Event{Type: EventRowsCounted, Step: 4, Tables: []TableRows{
		{Name: "public.Guild", Archive: 120, Restored: 119, Live: 120, State: "differs"},
		{Name: "public.User", Archive: 500, Restored: 500, Live: 500, State: "ok"},
		{Name: "public.Gone", Archive: 3, Restored: -1, Live: -1, State: "missing"},
	}})
	mustRecord(t, j, Event{Type: EventRestoreFinished, Result: ResultFailed, Error: "integrity checks failed"})
	md := BuildReport(j.Incident(), nil, t0.Add(time.Hour)).Markdown()
	for _, want := range []string{
		"### Rows of every table",
		"**2 of 3 tables did not hold the archive's rows:** public.Guild, public.Gone.",
		"| Table | Archive rows | Restored rows | Live rows | |",
		"| **public.Guild** | 120 | 119 | 120 | **differs** |",
		"| public.User | 500 | 500 | 500 | ok |",
		"| **public.Gone** | 3 | ? | ? | **missing** |",
		"?: not known",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// A point-in-time recovery's report says what it aimed at and reached, and its RPO is the
// incident's start minus the recovery point, whatever the dump that carried it was named;
// a journal read back holds the same, and a failed recovery gives no RPO.
func TestReportOfPointInTimeRecovery(t *testing.T) {
	clk := &fakeClock{now: t0}
	dir := t.TempDir()
	j := startTest(t, dir, clk, false)
	target := time.Date(2024, 1, 25, 13, 20, 0, 0, time.UTC)
	point := time.Date(2024, 1, 25, 13, 19, 58, 870000000, time.UTC)
	consistent := time.Date(2024, 1, 25, 2, 0, 5, 0, time.UTC)
	clk.Advance(20 * time.Minute)
	mustRecord(t, j, Event{Type: EventPITRRecovered, Step: 4, Database: "spywatcher", Result: ResultFailed, Error: "recovery failed; the server's log says: FATAL …",
		PITR: &PITRPoint{TargetKind: "time", TargetTime: &target, BaseBackup: "spywatcher_base_20240125_020003.tar.zst.gpg", Timeline: 1}})
	if r := BuildReport(j.Incident(), nil, clk.now); r.PointInTime == nil || r.PointInTime.RPOAchievedMinutes != nil || r.RPOAchievedMinutes != nil {
		t.Errorf("a failed recovery: %+v, want no RPO", r.PointInTime)
	}
	clk.Advance(5 * time.Minute)
	mustRecord(t, j, Event{Type: EventPITRRecovered, Step: 4, Database: "spywatcher", Result: ResultOK, Seconds: 134, PITR: &PITRPoint{
		TargetKind: "time", TargetTime: &target, BaseBackup: "spywatcher_base_20240125_020003.tar.zst.gpg", BaseLocation: "local", BaseConsistent: &consistent,
		FirstSegment: "000000010000000000000002", LastSegment: "0000000100000000000000D5", Segments: 212, Timeline: 1, NewTimeline: 2,
		Stopped: "recovery stopping before commit of transaction 91422, time 2024-01-25 13:20:00.412+00", RecoveryPoint: &point}})
	backupTime := time.Date(2024, 1, 25, 13, 19, 58, 0, time.UTC)
	mustRecord(t, j, Event{Type: EventBackupChosen, Step: 4, Backup: "spywatcher_full_20240125_131958.dump", Location: "point in time", BackupTime: &backupTime})
	inc, warnings, err := ReadJournal(j.Path())
	if err != nil || len(warnings) > 0 {
		t.Fatal(err, warnings)
	}
	r := BuildReport(inc, nil, clk.now)
	md := r.Markdown()
	for _, want := range []string{
		"## Point in time",
		"- Result: ok in 2m14s",
		"- Target: 2024-01-25 13:20:00 UTC",
		"- Base backup: `spywatcher_base_20240125_020003.tar.zst.gpg` from `local`, consistent from 2024-01-25 02:00:05 UTC",
		"- WAL: `000000010000000000000002` to `0000000100000000000000D5` (212 segments)",
		"- Timeline: followed 1, promoted to 2",
		"- Recovery point: 2024-01-25 13:19:58.870 UTC (the server: recovery stopping before commit of transaction 91422",
		"- RPO achieved: 40m1s (incident start minus the recovery point) against the scenario's 1h: met",
		"- Into: the database `spywatcher`, through the restore below",
		"| RPO | 1h | 40m1s (incident start minus the recovery point) | met |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"point_in_time":{"result":"ok"`, `"target_kind":"time"`, `"target_time":"2024-01-25T13:20:00Z"`, `"new_timeline":2`,
		`"recovery_point":"2024-01-25T13:19:58.87Z"`, `"rpo_target_minutes":60`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("report JSON lacks %s: %s", want, data)
		}
	}
}
