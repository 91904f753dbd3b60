package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"drconsole/checklists"
	"drconsole/drill"
	"drconsole/drill/inject"
	"drconsole/storage"
	"drconsole/ui"
)

// poisonListener counts every connection made to it: a production setting pointing at it
// that is tried shows up as one.
func poisonListener(t *testing.T) (string, *atomic.Int32) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return l.Addr().String(), &n
}

// drive runs a command the way the program would, feeding its messages back to the
// model; the clock's ticks are not fed back (they re-arm themselves).
func drive(m tea.Model, cmd tea.Cmd) tea.Model {
	if cmd == nil {
		return m
	}
	msg := cmd()
	if msg == nil {
		return m
	}
	if v := reflect.ValueOf(msg); v.Kind() == reflect.Slice && v.Type().Elem() == reflect.TypeOf(tea.Cmd(nil)) {
		for i := 0; i < v.Len(); i++ {
			m = drive(m, v.Index(i).Interface().(tea.Cmd))
		}
		return m
	}
	switch msg.(type) {
	case tea.QuitMsg:
		return m
	}
	if strings.HasSuffix(reflect.TypeOf(msg).String(), "tickMsg") {
		return m
	}
	m, cmd = m.Update(msg)
	return drive(m, cmd)
}

func press(m tea.Model, keys ...string) tea.Model {
	for _, k := range keys {
		msg := tea.KeyPressMsg{Code: []rune(k)[0], Text: k}
		switch k {
		case "enter":
			msg = tea.KeyPressMsg{Code: tea.KeyEnter}
		case "down":
			msg = tea.KeyPressMsg{Code: tea.KeyDown}
		}
		var cmd tea.Cmd
		m, cmd = m.Update(msg)
		m = drive(m, cmd)
	}
	return m
}

// A tabletop reads none of this machine's production settings: the server, the
// locations, the configuration and the state directory the environment names are never
// tried, its console has no server and no location, and a real incident open in the
// production state directory is neither offered nor touched.
func TestTabletopReadsNoProductionSettings(t *testing.T) {
	addr, tries := poisonListener(t)
	host, port, _ := net.SplitHostPort(addr)
	prodState, home := t.TempDir(), t.TempDir()
	prodConfig := filepath.Join(t.TempDir(), "drconsole.yaml")
	os.WriteFile(prodConfig, []byte("locations:\n  - name: primary\n    type: s3\n    bucket: poison\n    endpoint: http://"+addr+"\n"), 0o600)
	rb := checklists.Default()
	sc, _ := rb.Scenario(drill.Ransomware)
	real, err := checklists.Start(filepath.Join(prodState, "drconsole"), sc, false, "oncall", "db1")
	if err != nil {
		t.Fatal(err)
	}
	real.Close()
	poison := map[string]string{
		"PGHOST": host, "PGPORT": port, "PGUSER": "poison", "PGPASSWORD": "poison", "PGDATABASE": "poison",
		"DB_HOST": host, "DB_PORT": port, "DB_NAME": "poison", "DATABASE_URL": "postgres://poison:poison@" + addr + "/poison",
		"S3_BUCKET": "poison", "S3_BUCKET_SECONDARY": "poison2", "AWS_ENDPOINT_URL_S3": "http://" + addr, "AWS_ACCESS_KEY_ID": "poison",
		"AWS_SECRET_ACCESS_KEY": "poison", "BACKUP_DIR": t.TempDir(), "DRCONSOLE_CONFIG": prodConfig, "XDG_STATE_HOME": prodState,
		"DRCONSOLE_PASSPHRASE": "poison", "HOME": home, "USER": "alice",
	}
	for k, v := range poison {
		t.Setenv(k, v)
	}
	var got ui.Options
	var screens []string
	tabletopConsole = func(_ context.Context, _ *app, opt ui.Options) error {
		got = opt
		var m tea.Model = ui.New(opt)
		m, _ = m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
		m = drive(m, m.Init())
		screens = append(screens, ansi.Strip(m.(ui.Model).Render()))
		m = press(m, "enter")                         // start a drill: the only choice
		m = press(m, "down", "down", "down", "enter") // Ransomware Attack
		screens = append(screens, ansi.Strip(m.(ui.Model).Render()))
		return m.(ui.Model).Close()
	}
	defer func() { tabletopConsole = runConsoleProgram }()
	var out, errb bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: os.Getenv}
	if code := a.main([]string{"drill", "--tabletop", "--scenario", "ransomware", "--injects", "example"}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for k := range poison {
		if v, ok := os.LookupEnv(k); ok && productionEnv(k) {
			t.Errorf("%s=%s is still in the environment", k, v)
		}
	}
	// The one state-directory rule: XDG_STATE_HOME's drconsole, for the journals as for
	// the scorecard (drills/ beside them), never production's incidents/.
	want := filepath.Join(prodState, "drconsole", "drills", "tabletop")
	if got.StateDir != want || got.Conn != nil || len(got.Locations) != 0 || !got.Drill || got.ConnErr == nil || len(got.Injects) != 3 {
		t.Fatalf("the tabletop's console: state %s (want %s), conn %v, %d locations, drill %v, %d injects", got.StateDir, want, got.Conn, len(got.Locations), got.Drill, len(got.Injects))
	}
	if n := tries.Load(); n != 0 {
		t.Errorf("%d connections to what the production settings name", n)
	}
	for _, s := range screens {
		if strings.Contains(s, "Resume") || strings.Contains(s, "poison") || strings.Contains(s, "real recovery") {
			t.Errorf("the tabletop offers or shows something of production:\n%s", s)
		}
	}
	if !strings.Contains(screens[1], "Ransomware") || !strings.Contains(screens[1], "DRILL") {
		t.Errorf("no ransomware drill opened:\n%s", screens[1])
	}
	list, _ := checklists.List(want)
	if len(list) != 1 || !list[0].Drill || list[0].Scenario != drill.Ransomware {
		t.Errorf("tabletop journals: %+v", list)
	}
	prod, _ := checklists.List(filepath.Join(prodState, "drconsole"))
	if len(prod) != 1 || prod[0].ID != real.ID() || prod[0].Drill || prod[0].Closed {
		t.Errorf("production's incidents: %+v", prod)
	}
	if !strings.Contains(errb.String(), "the journal goes in "+filepath.Join(want, "incidents")) {
		t.Errorf("where the journal goes is not said:\n%s", errb.String())
	}
	if cards, _ := filepath.Glob(filepath.Join(prodState, "drconsole", "drills", "*-ransomware-tabletop.json")); len(cards) != 1 {
		t.Errorf("the tabletop's scorecard is not beside its journals: %v", cards)
	}
	if left, _ := filepath.Glob(filepath.Join(home, ".local", "state", "*")); len(left) != 0 {
		t.Errorf("the tabletop wrote under $HOME/.local/state while XDG_STATE_HOME is set: %v", left)
	}

	// --dir holding a real incident is refused; so is an inject file with errors.
	a = &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: os.Getenv}
	if code := a.main([]string{"drill", "--tabletop", "--dir", filepath.Join(prodState, "drconsole")}); code != exitUsage {
		t.Errorf("--dir with a real incident: exit %d", code)
	}
	bad := filepath.Join(t.TempDir(), "injects.yaml")
	os.WriteFile(bad, []byte("- at: 10\n  event: x\n"), 0o600)
	errb.Reset()
	if code := a.main([]string{"drill", "--tabletop", "--dir", t.TempDir(), "--injects", bad}); code != exitUsage || !strings.Contains(errb.String(), bad+":1: inject 1: at \"10\" has no unit") {
		t.Errorf("a bad inject file: exit %d: %s", code, errb.String())
	}
	// A sandbox drill checks its inject file before it builds anything.
	errb.Reset()
	if code := a.main([]string{"drill", "--injects", bad}); code != exitUsage || strings.Contains(errb.String(), "building") {
		t.Errorf("a sandbox drill with a bad inject file: exit %d: %s", code, errb.String())
	}
	if code := a.main([]string{"drill", "--injects", "example", "--auto"}); code != exitUsage {
		t.Errorf("--injects with --auto: exit %d", code)
	}
}

// In a sandbox, primary-unreachable and newest-backup-corrupt are done for real: the
// primary location cannot be listed, and the newest backup fails drconsole verify in
// every location while the one before it passes.
func TestSandboxAppliesInjectsForReal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a sandbox")
	}
	ctx := context.Background()
	sb, err := drill.Build(ctx, drill.Options{Scenario: drill.Corruption, Size: "small", Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Remove()
	// The fault says what it did, table by table: deleting users took their guilds, API
	// keys and sessions with them (ON DELETE CASCADE), and the guilds left were renamed.
	now, err := sb.Fingerprints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows := func(prints map[string]string, table string) int {
		n, _ := strconv.Atoi(strings.Fields(prints["public."+table])[0])
		return n
	}
	gone := func(table string) int { return rows(sb.BeforeFault, table) - rows(now, table) }
	said := fmt.Sprintf(`"User" rows deleted (%d of %d), and by cascade their %d guilds, %d API keys and %d sessions; every remaining "Guild" row's name overwritten (%d rows)`,
		gone("User"), rows(sb.BeforeFault, "User"), gone("Guild"), gone("ApiKey"), gone("Session"), rows(now, "Guild"))
	if !strings.Contains(sb.Fault, said) || gone("Guild") == 0 {
		t.Errorf("the fault says:\n  %s\nwhat it did:\n  %s", sb.Fault, said)
	}
	env := sb.Env()
	verify := func(backup string) (int, string) {
		var out, errb bytes.Buffer
		in := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }, configPath: sb.Config, stateDir: sb.StateDir}
		code := in.main([]string{"verify", "--gpg-key", sb.Secret, "--json", backup})
		return code, out.String() + errb.String()
	}
	newest, before := sb.Backups[len(sb.Backups)-1], sb.Backups[len(sb.Backups)-2]
	if code, out := verify(newest); code != 0 {
		t.Fatalf("verify %s before the inject: exit %d: %s", newest, code, out)
	}
	primary := storage.NewDir("primary", filepath.Join(sb.Dir, "backups", "primary"))
	if _, err := primary.List(ctx); err != nil {
		t.Fatal(err)
	}

	did, err := sb.ApplyInject(ctx, inject.PrimaryUnreachable)
	if err != nil || !strings.Contains(did, "unreachable") {
		t.Fatalf("primary-unreachable: %q, %v", did, err)
	}
	if _, err := primary.List(ctx); !errors.Is(err, storage.ErrUnreachable) {
		t.Errorf("the primary location after primary-unreachable: %v", err)
	}
	var out, errb bytes.Buffer
	in := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }, configPath: sb.Config, stateDir: sb.StateDir}
	in.main([]string{"backups"})
	if !strings.Contains(out.String()+errb.String(), "unreachable") {
		t.Errorf("drconsole backups does not see the primary location unreachable:\n%s%s", out.String(), errb.String())
	}

	did, err = sb.ApplyInject(ctx, inject.NewestBackupCorrupt)
	if err != nil || !strings.Contains(did, newest) || !strings.Contains(did, "primary and secondary") {
		t.Fatalf("newest-backup-corrupt: %q, %v", did, err)
	}
	if code, out := verify(newest); code != exitCorrupt {
		t.Errorf("verify %s after the inject: exit %d (want %d): %s", newest, code, exitCorrupt, out)
	}
	if code, out := verify(before); code != 0 {
		t.Errorf("verify %s, the one before: exit %d: %s", before, code, out)
	}
	if sb.Clean != before {
		t.Errorf("the right backup is still %s", sb.Clean)
	}
	// The damage is in the unreachable primary's copy too, for when it comes back.
	if err := os.Rename(filepath.Join(sb.Dir, "backups", "primary.unreachable"), filepath.Join(sb.Dir, "backups", "primary")); err != nil {
		t.Fatal(err)
	}
	os.Rename(filepath.Join(sb.Dir, "backups", "secondary"), filepath.Join(sb.Dir, "backups", "secondary.away"))
	if code, out := verify(newest); code != exitCorrupt {
		t.Errorf("verify %s in the primary: exit %d: %s", newest, code, out)
	}
	// The answer moved with the right backup: restoring it brings back exactly what the
	// sandbox now scores against.
	out.Reset()
	errb.Reset()
	in = &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }, configPath: sb.Config}
	if code := in.main([]string{"restore", "--yes", "--gpg-key", sb.Secret, "--scenario", drill.Corruption, "--new-incident", before}); code != 0 {
		t.Fatalf("restore %s: exit %d: %s", before, code, errb.String())
	}
	prints, err := sb.Fingerprints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for table, want := range sb.Prints {
		if prints[table] != want {
			t.Errorf("%s restored from %s: %s; the sandbox's answer: %s", table, before, prints[table], want)
		}
	}
}

// A tabletop of one scenario starts its own: the team's first enters start a new drill of
// it, though a tabletop of another scenario is open in the same directory (untouched, and
// not the one scored); an open one of the same scenario is offered, after it, by name.
func TestTabletopStartsItsOwnScenario(t *testing.T) {
	state := t.TempDir()
	dir := filepath.Join(state, "drconsole", "drills", "tabletop")
	rb := checklists.Default()
	corruption, _ := rb.Scenario(drill.Corruption)
	open, err := checklists.Start(dir, corruption, true, "bob", "bastion")
	if err != nil {
		t.Fatal(err)
	}
	open.Close()
	before, _ := os.ReadFile(open.Path())

	var screens []string
	tabletopConsole = func(_ context.Context, _ *app, opt ui.Options) error {
		var m tea.Model = ui.New(opt)
		m, _ = m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
		m = drive(m, m.Init())
		screens = append(screens, ansi.Strip(m.(ui.Model).Render()))
		m = press(m, "enter", "enter") // the first choice, then the scenario the picker starts on
		screens = append(screens, ansi.Strip(m.(ui.Model).Render()))
		return m.(ui.Model).Close()
	}
	defer func() { tabletopConsole = runConsoleProgram }()
	env := map[string]string{"XDG_STATE_HOME": state, "HOME": t.TempDir(), "USER": "alice"}
	out, errb, code := runCLI(t, env, "drill", "--tabletop", "--scenario", "ransomware")
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errb)
	}
	if !strings.Contains(screens[0], "> Start a new drill of Ransomware Attack") || strings.Contains(screens[0], "Database Corruption") ||
		!strings.Contains(screens[0], "1 open drill(s) of other scenarios: not offered") {
		t.Errorf("the start screen offers another scenario's tabletop first:\n%s", screens[0])
	}
	if !strings.Contains(screens[1], "Ransomware Attack") || !strings.Contains(screens[1], "Contain the Attack") {
		t.Errorf("enter, enter did not open a ransomware tabletop:\n%s", screens[1])
	}
	list, _ := checklists.List(dir)
	var ransomware string
	for _, inc := range list {
		if inc.Scenario == drill.Ransomware {
			ransomware = inc.ID
		}
	}
	if len(list) != 2 || ransomware == "" {
		t.Fatalf("tabletops: %+v", list)
	}
	if after, _ := os.ReadFile(open.Path()); string(after) != string(before) {
		t.Errorf("the open corruption tabletop was written to:\n%s", after)
	}
	cards, errs := drill.LoadScorecards(filepath.Join(state, "drconsole", "drills"))
	if len(errs) != 0 || len(cards) != 1 || cards[0].Scenario != drill.Ransomware || cards[0].Incident != ransomware {
		t.Errorf("the scorecard kept is not of the ransomware tabletop %s: %v %+v", ransomware, errs, cards)
	}

	// Opened again, the open ransomware tabletop is offered after a new one, by name.
	tabletopConsole = func(_ context.Context, _ *app, opt ui.Options) error {
		var m tea.Model = ui.New(opt)
		m, _ = m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
		m = drive(m, m.Init())
		screens = append(screens[:0], ansi.Strip(m.(ui.Model).Render()))
		return m.(ui.Model).Close()
	}
	if _, errb, code := runCLI(t, env, "drill", "--tabletop", "--scenario", "ransomware"); code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	if !strings.Contains(screens[0], "> Start a new drill of Ransomware Attack") || !strings.Contains(screens[0], "  Resume this scenario's open drill instead: started") {
		t.Errorf("the open ransomware tabletop is not offered after a new one:\n%s", screens[0])
	}
}

// Mistakes on a drill's command line are usage errors said in one line before anything is
// built: an unknown scenario names the known ones, an inject file that cannot be read
// names its path.
func TestDrillCommandLineMistakes(t *testing.T) {
	env := map[string]string{"XDG_STATE_HOME": t.TempDir(), "HOME": t.TempDir()}
	missing := filepath.Join(t.TempDir(), "nonexistent.yaml")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"drill", "--scenario", "databse-corruption"}, `drconsole drill: unknown scenario "databse-corruption" (one of: database-corruption, infrastructure-failure, regional-outage, ransomware)`},
		{[]string{"drill", "--scenario", "x", "--injects", "example"}, `drconsole drill: unknown scenario "x" (one of: database-corruption, infrastructure-failure, regional-outage, ransomware)`},
		{[]string{"drill", "--tabletop", "--scenario", "x"}, `drconsole drill: unknown scenario "x" (one of: database-corruption, infrastructure-failure, regional-outage, ransomware)`},
		{[]string{"drill", "--injects", missing}, "drconsole drill: inject file " + missing + " cannot be read: no such file or directory"},
		{[]string{"drill", "--tabletop", "--injects", missing}, "drconsole drill: inject file " + missing + " cannot be read: no such file or directory"},
	} {
		out, errb, code := runCLI(t, env, c.args...)
		if code != exitUsage || out != "" || errb != c.want+"\n" {
			t.Errorf("%v: exit %d (want %d)\nstdout %q\nstderr %q\nwant   %q", c.args, code, exitUsage, out, errb, c.want+"\n")
		}
	}
}
