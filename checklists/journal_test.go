package checklists

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var t0 = time.Date(2024, 1, 25, 14, 0, 0, 0, time.UTC)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func startTest(t *testing.T, dir string, clk *fakeClock, drill bool) *Journal {
	t.Helper()
	s, _ := Default().Scenario(DefaultScenario)
	j, err := StartIncident(StartOptions{StateDir: dir, Scenario: s, Drill: drill, Operator: "alice", Host: "bastion-1", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func mustRecord(t *testing.T, j *Journal, es ...Event) {
	t.Helper()
	for _, e := range es {
		if err := j.Record(e); err != nil {
			t.Fatal(err)
		}
	}
}

func TestJournalRoundTrip(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{now: t0}
	j := startTest(t, dir, clk, false)
	if want := filepath.Join(dir, "incidents", "20240125-140000-database-corruption.jsonl"); j.Path() != want {
		t.Fatalf("path %s, want %s", j.Path(), want)
	}
	mustRecord(t, j, Event{Type: EventStepStarted, Step: 1})
	clk.Advance(8 * time.Minute)
	mustRecord(t, j, Event{Type: EventStepDone, Step: 1, Note: "index corruption on Guild"}, Event{Type: EventStepSkipped, Step: 2, Note: "app already down"})
	exit := 0
	mustRecord(t, j, Event{Type: EventCommandRun, Step: 3, Command: "aws s3 ls", ExitCode: &exit, Output: "x\n"})
	if err := j.CloseIncident("recovered", "done"); err != nil {
		t.Fatal(err)
	}
	if err := j.Record(Event{Type: EventNote, Note: "late"}); !errors.Is(err, ErrIncidentClosed) {
		t.Fatalf("record after close: %v", err)
	}
	inc, warnings, err := ReadJournal(j.Path())
	if err != nil || len(warnings) > 0 {
		t.Fatal(err, warnings)
	}
	if inc.Operator != "alice" || inc.Host != "bastion-1" || inc.Drill || !inc.Closed || inc.Outcome != "recovered" {
		t.Errorf("incident: %+v", inc)
	}
	if inc.Steps[0].Status != StepDone || inc.Steps[0].Ended.Sub(inc.Steps[0].Started) != 8*time.Minute || inc.Steps[1].Status != StepSkipped {
		t.Errorf("steps: %+v", inc.Steps[:2])
	}
	if len(inc.Plan.Steps) != 8 || inc.Plan.RTO() != 2*time.Hour || len(inc.Plan.Checklist) != 11 {
		t.Errorf("plan: %+v", inc.Plan)
	}
	if len(inc.Commands) != 1 || *inc.Commands[0].ExitCode != 0 {
		t.Errorf("commands: %+v", inc.Commands)
	}
	for i, e := range inc.Events {
		if e.Seq != i+1 {
			t.Errorf("event %d has seq %d", i, e.Seq)
		}
	}
}

func TestListOpenFirstAndResume(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{now: t0}
	a := startTest(t, dir, clk, false)
	a.CloseIncident("recovered", "")
	a.Close()
	clk.Advance(time.Hour)
	b := startTest(t, dir, clk, true)
	b.Close()
	clk.Advance(time.Hour)
	c := startTest(t, dir, clk, false)
	c.CloseIncident("abandoned", "")
	c.Close()
	// Same second, same scenario: a second file, not a clash.
	d := startTest(t, dir, clk, false)
	d.Close()

	list, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range list {
		ids = append(ids, fmt.Sprintf("%s closed=%v", s.ID, s.Closed))
	}
	want := []string{
		"20240125-160000-database-corruption-2 closed=false",
		"20240125-150000-database-corruption-drill closed=false",
		"20240125-160000-database-corruption closed=true",
		"20240125-140000-database-corruption closed=true",
	}
	if strings.Join(ids, "\n") != strings.Join(want, "\n") {
		t.Fatalf("list:\n%s\nwant:\n%s", strings.Join(ids, "\n"), strings.Join(want, "\n"))
	}

	j, err := OpenLatest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if j.ID() != "20240125-160000-database-corruption-2" {
		t.Errorf("OpenLatest = %s", j.ID())
	}
	if _, err := Resume(dir, j.ID()); !errors.Is(err, ErrJournalBusy) {
		t.Errorf("second writer: %v, want ErrJournalBusy", err)
	}
	j.Now = clk.Now
	mustRecord(t, j, Event{Type: EventNote, Note: "second session"})
	j.Close()
	if inc, _, _ := ReadJournal(j.Path()); len(inc.Notes) != 1 || inc.Events[1].Seq != 2 {
		t.Errorf("after resume: %+v", inc.Events)
	}
	if _, err := Resume(dir, "20240125-140000"); !errors.Is(err, ErrIncidentClosed) {
		t.Errorf("resume closed: %v", err)
	}
	if _, err := Resume(dir, "20240125"); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("ambiguous prefix: %v", err)
	}
	if _, err := Resume(dir, "nope"); !errors.Is(err, ErrNoIncident) {
		t.Errorf("missing: %v", err)
	}
}

func TestTornLastLineIsAWarning(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{now: t0}
	j := startTest(t, dir, clk, false)
	mustRecord(t, j, Event{Type: EventStepStarted, Step: 1})
	j.Close()
	f, _ := os.OpenFile(j.Path(), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"seq":3,"time":"2024-01-25T14:01:00Z","type":"step_do`)
	f.Close()

	inc, warnings, err := ReadJournal(j.Path())
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], ":3: the last line is cut off") {
		t.Fatalf("err %v warnings %q", err, warnings)
	}
	if len(inc.Events) != 2 {
		t.Errorf("events: %d", len(inc.Events))
	}
	j2, err := Resume(dir, j.ID())
	if err != nil {
		t.Fatal(err)
	}
	j2.Now = clk.Now
	mustRecord(t, j2, Event{Type: EventStepDone, Step: 1})
	j2.Close()
	inc, warnings, err = ReadJournal(j.Path())
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], ":3: not a journal event") {
		t.Fatalf("after resume: err %v warnings %q", err, warnings)
	}
	if inc.Steps[0].Status != StepDone || len(inc.Sessions) != 1 {
		t.Errorf("after resume: step %s, sessions %v", inc.Steps[0].Status, inc.Sessions)
	}
}

func TestJournalConcurrentRecords(t *testing.T) {
	dir := t.TempDir()
	j := startTest(t, dir, &fakeClock{now: t0}, false)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if err := j.Record(Event{Type: EventNote, Note: fmt.Sprintf("g%d-%d", g, i)}); err != nil {
					t.Error(err)
					return
				}
				_ = j.Incident()
			}
		}()
	}
	wg.Wait()
	inc, warnings, err := ReadJournal(j.Path())
	if err != nil || len(warnings) > 0 || len(inc.Events) != 201 {
		t.Fatalf("%v %v %d events", err, warnings, len(inc.Events))
	}
	for i, e := range inc.Events {
		if e.Seq != i+1 {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
}

func TestSecretsNeverReachTheJournal(t *testing.T) {
	const (
		password   = "Tr0ub4dor&3"
		passphrase = "correct horse battery staple"
	)
	dir := t.TempDir()
	j := startTest(t, dir, &fakeClock{now: t0}, false)
	j.AddSecret(passphrase)
	exit := 1
	taken := t0.Add(-90 * time.Minute)
	mustRecord(t, j,
		Event{Type: EventBackupChosen, Backup: "spywatcher_full_20240125_120000.dump.gz.gpg", Location: "s3://AKIA:" + password + "@bucket/postgres/full/", BackupTime: &taken},
		Event{Type: EventRestoreStarted, Database: "postgres://spywatcher:" + password + "@db:5432/spywatcher?sslmode=require"},
		Event{Type: EventCommandRun, Command: "PGPASSWORD=" + password + " pg_restore -d spywatcher", ExitCode: &exit,
			Output: "gpg: passphrase " + passphrase + " rejected\n-----BEGIN PGP PRIVATE KEY BLOCK-----\nxcLYBGX\n-----END PGP PRIVATE KEY BLOCK-----\n"},
		Event{Type: EventCommandShown, Command: `export DB_PASSWORD="` + password + `"`},
		Event{Type: EventCommandShown, Command: "gpg --batch --passphrase " + passphrase[:7] + " -d x.gpg"},
		Event{Type: EventNote, Note: "host=db user=spywatcher password=" + password + " dbname=x"},
		Event{Type: EventRestoreFinished, Result: ResultFailed, Error: "connect postgres://u:" + password + "@db/x: refused"},
		Event{Type: EventNote, Note: `curl -d '{"username": "test", "password": "` + password + `"}' -H "Authorization: Bearer abc.def.ghi"`},
	)
	data, _ := os.ReadFile(j.Path())
	for _, secret := range []string{password, passphrase, "xcLYBGX", "abc.def.ghi"} {
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("journal contains %q:\n%s", secret, data)
		}
	}
	if !bytes.Contains(data, []byte("postgres://spywatcher:[REDACTED]@db:5432/spywatcher")) {
		t.Errorf("URL redaction lost the rest of the URL:\n%s", data)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:pw@h/db":                     "postgres://u:[REDACTED]@h/db",
		"postgres://u@h/db":                        "postgres://u@h/db",
		"PGPASSWORD=abc psql":                      "PGPASSWORD=[REDACTED] psql",
		`export DB_PASSWORD="your_password"`:       `export DB_PASSWORD=[REDACTED]`,
		"--passphrase-file /k/p":                   "--passphrase-file /k/p",
		"--passphrase=abc x":                       "--passphrase=[REDACTED] x",
		"aws s3 ls s3://spywatcher-backups/ -x":    "aws s3 ls s3://spywatcher-backups/ -x",
		"https://x/y?X-Amz-Signature=deadbeef&a=b": "https://x/y?X-Amz-Signature=[REDACTED]&a=b",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestJournalChildWriter is the child of TestJournalSurvivesSIGKILL: it appends events
// until it is killed.
func TestJournalChildWriter(t *testing.T) {
	dir := os.Getenv("DRCONSOLE_JOURNAL_CHILD")
	if dir == "" {
		t.Skip("only run as the child of TestJournalSurvivesSIGKILL")
	}
	s, _ := Default().Scenario(DefaultScenario)
	j, err := Start(dir, s, true, "child", "host")
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("output line\n", 1000)
	exit := 0
	for i := 0; ; i++ {
		j.Record(Event{Type: EventCommandRun, Command: "echo", ExitCode: &exit, Output: big, Step: 1 + i%8})
	}
}

func TestJournalSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestJournalChildWriter$")
		cmd.Env = append(os.Environ(), "DRCONSOLE_JOURNAL_CHILD="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until it has written a few events, then kill it mid-stream.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			entries, _ := os.ReadDir(IncidentsDir(dir))
			if len(entries) == round+1 {
				if newest := newestFile(IncidentsDir(dir)); newest > 40<<10 {
					break
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
		time.Sleep(time.Duration(20+round*13) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	list, err := List(dir)
	if err != nil || len(list) != 3 {
		t.Fatalf("list: %v, %d incidents", err, len(list))
	}
	for _, s := range list {
		inc, warnings, err := ReadJournal(s.Path)
		if err != nil {
			t.Fatalf("%s: %v", s.ID, err)
		}
		if len(inc.Events) < 2 || len(warnings) > 1 {
			t.Errorf("%s: %d events, warnings %q", s.ID, len(inc.Events), warnings)
		}
		t.Logf("%s: %d events, %d warnings", s.ID, len(inc.Events), len(warnings))
		// The killed incident can be resumed and written to.
		j, err := Resume(dir, s.ID)
		if err != nil {
			t.Fatalf("resume %s: %v", s.ID, err)
		}
		if err := j.Record(Event{Type: EventSession, Note: "resumed after kill"}); err != nil {
			t.Fatal(err)
		}
		j.Close()
		if _, w, err := ReadJournal(s.Path); err != nil || len(w) > 1 {
			t.Errorf("%s after resume: %v %q", s.ID, err, w)
		}
	}
}

func newestFile(dir string) int64 {
	entries, _ := os.ReadDir(dir)
	var newest time.Time
	var size int64
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.ModTime().After(newest) {
			newest, size = fi.ModTime(), fi.Size()
		}
	}
	return size
}
