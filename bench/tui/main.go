// Command tui is the console's benchmark (issue 5, "Never blocks"): a restore's
// throughput with the console attached against the same restore with no reporter, and
// how long a keypress takes to reach the terminal while that restore streams.
//
//	tui -db-url URL -key SECRET_KEY_FILE [-rounds 3] [-cpuprofile FILE] BACKUP_FILE
//
// URL names a database that does not exist: each restore creates it afresh (as a
// scratch database beside that name) and the benchmark drops it afterwards. run.sh in
// this directory starts a throwaway server and calls this. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"
	"github.com/charmbracelet/x/ansi"

	"drconsole/checklists"
	"drconsole/recovery"
	"drconsole/storage"
	"drconsole/ui"
)

func main() {
	dbURL := flag.String("db-url", "", "the server, and a database `URL` name that does not exist yet")
	keyFile := flag.String("key", "", "secret OpenPGP key `file` for the backup")
	rounds := flag.Int("rounds", 3, "rounds; each runs both variants, in alternating order")
	every := flag.Duration("key-every", 50*time.Millisecond, "interval between key presses during the console's restore")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the console variant's runs to `file`")
	only := flag.String("only", "", "run one variant only: bare or console (for profiling)")
	flag.Parse()
	if flag.NArg() != 1 || *dbURL == "" || *keyFile == "" {
		fmt.Fprintln(os.Stderr, "usage: tui -db-url URL -key SECRET_KEY_FILE [-rounds N] [-key-every D] [-cpuprofile FILE] [-only bare|console] BACKUP_FILE")
		os.Exit(2)
	}
	b := &bench{every: *every}
	if err := b.setup(*dbURL, *keyFile, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "tui:", err)
		os.Exit(1)
	}
	if err := b.run(*rounds, *only, *cpuprofile); err != nil {
		fmt.Fprintln(os.Stderr, "tui:", err)
		os.Exit(1)
	}
}

type bench struct {
	conn   *recovery.Conn
	keys   recovery.Keys
	loc    storage.Location
	backup storage.Backup
	every  time.Duration

	bare, console       []time.Duration // restore durations
	bareCPU, consoleCPU []time.Duration // this process's CPU time over each run
	pairs               []float64       // bare/console duration within a round: the throughput ratio
	latency             []time.Duration // keypress to the frame that shows it
	toInput             []time.Duration // keypress to the console's Update (input path and queue)
	updateView          []time.Duration // Update+View of one message, any message, during restores
	frames              int
	frameTime           time.Duration
}

func (b *bench) setup(dbURL, keyFile, backupFile string) error {
	conn, err := recovery.ResolveConn(dbURL, os.Getenv)
	if err != nil {
		return err
	}
	if conn.Database == "" {
		return errors.New("-db-url must name the target database")
	}
	ents, err := recovery.ReadKeyFile(keyFile)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(backupFile)
	if err != nil {
		return err
	}
	b.conn, b.keys = conn, recovery.Keys{Entities: ents}
	b.loc = storage.NewDir("bench", filepath.Dir(abs))
	list, err := b.loc.List(context.Background())
	if err != nil {
		return err
	}
	for _, bk := range list {
		if bk.Name == filepath.Base(abs) {
			b.backup = bk
		}
	}
	if b.backup.Name == "" {
		return fmt.Errorf("%s is not listed in %s", filepath.Base(abs), b.loc)
	}
	return nil
}

func (b *bench) run(rounds int, only, cpuprofile string) error {
	var prof *os.File
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		prof = f
	}
	fmt.Printf("backup %s: %s; %d rounds; a key every %s in the console variant\n", b.backup.Name, checklists.HumanBytes(b.backup.Size), rounds, b.every)
	for r := 1; r <= rounds; r++ {
		variants := []string{"bare", "console"}
		if r%2 == 0 { // alternate which goes first, so drift in the machine's load spreads over both
			variants[0], variants[1] = variants[1], variants[0]
		}
		var got [2]time.Duration
		for _, v := range variants {
			if only != "" && v != only {
				continue
			}
			if err := b.fresh(); err != nil {
				return err
			}
			var d time.Duration
			var err error
			cpu0, gc0 := cpuTime(), numGC()
			if v == "bare" {
				d, err = b.runBare()
				b.bare = append(b.bare, d)
				got[0] = d
			} else {
				if prof != nil {
					if err := pprof.StartCPUProfile(prof); err != nil {
						return err
					}
				}
				d, err = b.runConsole()
				if prof != nil {
					pprof.StopCPUProfile()
					prof = nil // one profile: the first console run
				}
				b.console = append(b.console, d)
				got[1] = d
			}
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r, v, err)
			}
			if v == "bare" {
				b.bareCPU = append(b.bareCPU, cpuTime()-cpu0)
			} else {
				b.consoleCPU = append(b.consoleCPU, cpuTime()-cpu0)
			}
			fmt.Printf("round %d  %-8s %7.2f s  %6.1f MB/s of backup  %5.2f s cpu  %3d GCs  (load %s)\n", r, v, d.Seconds(),
				float64(b.backup.Size)/d.Seconds()/1e6, (cpuTime() - cpu0).Seconds(), numGC()-gc0, loadavg())
		}
		if got[0] > 0 && got[1] > 0 {
			b.pairs = append(b.pairs, got[0].Seconds()/got[1].Seconds())
		}
	}
	b.fresh()
	b.report()
	return nil
}

// fresh leaves no database from an earlier run, with its writes flushed, so that every
// restore starts from the same state (as bench/restore/run.sh does).
func (b *bench) fresh() error {
	ctx := context.Background()
	c, err := b.conn.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT datname FROM pg_database WHERE datname = $1 OR datname LIKE $1 || '\_restore\_%'`, b.conn.Database)
	if err != nil {
		return err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return err
		}
		names = append(names, n)
	}
	rows.Close()
	for _, n := range names {
		if _, err := c.Exec(ctx, fmt.Sprintf(`DROP DATABASE %q WITH (FORCE)`, n)); err != nil {
			return err
		}
	}
	if _, err := c.Exec(ctx, "CHECKPOINT"); err != nil {
		return err
	}
	syscall.Sync()
	return nil
}

// runBare is the restore with nothing attached: Prepare, then Restore timed alone.
func (b *bench) runBare() (time.Duration, error) {
	ctx := context.Background()
	keys := b.keys
	plan, err := recovery.Prepare(ctx, recovery.Source{Location: b.loc, Backup: b.backup}, recovery.Options{Conn: b.conn, Keys: &keys})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	r, err := plan.Restore(ctx, recovery.Discard)
	d := time.Since(start)
	if err != nil {
		return d, err
	}
	return d, r.Abandon(ctx)
}

// runConsole drives the real console by keys to the restore, as an operator would,
// then presses ? (show or hide all keys) every b.every through the program's input
// until the restore is over. The restore's own duration comes from the journal, which
// times plan.Restore exactly as runBare does.
func (b *bench) runConsole() (time.Duration, error) {
	ctx := context.Background()
	state, err := os.MkdirTemp("", "drconsole-tui-bench-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(state)
	work := &sync.WaitGroup{}
	d := &driver{inner: ui.New(ui.Options{Context: ctx, StateDir: state, Locations: []storage.Location{b.loc}, Conn: b.conn,
		Keys: b.keys, Operator: "bench", Host: "bench", Theme: ui.DefaultTheme(), Work: work})}
	out := &frameWriter{d: d}
	inR, inW := io.Pipe()
	p := tea.NewProgram(d, tea.WithInput(inR), tea.WithOutput(out), tea.WithWindowSize(80, 24), tea.WithoutSignalHandler(),
		tea.WithColorProfile(colorprofile.TrueColor), tea.WithEnvironment([]string{"TERM=xterm-256color"}))
	done := make(chan error, 1)
	go func() { _, err := p.Run(); done <- err }()
	defer func() { inW.Close() }()
	p.Send(tea.WindowSizeMsg{Width: 80, Height: 24})

	press := func(keys ...string) {
		for _, k := range keys {
			p.Send(keyPress(k))
		}
	}
	steps := []struct {
		wait  string
		keys  []string
		limit time.Duration
	}{
		{"Start a new incident", []string{"enter"}, 10 * time.Second},
		{"Which scenario is this?", []string{"enter"}, 5 * time.Second},
		{"Escalation level", []string{"down", "down", "down", "enter"}, 5 * time.Second},
		{"Step 4.", []string{"enter"}, 5 * time.Second},
		{"Choose the backup to restore", append(append([]string{"/"}, strings.Split(b.backup.Name, "")...), "enter"), 10 * time.Second},
		{"\n" + b.backup.Name + "\n", []string{"enter"}, 10 * time.Second}, // listed, and the only row left highlighted
		{"to start", append(strings.Split(b.conn.Database, ""), "enter"), 60 * time.Second},
		{"Restoring " + b.backup.Name, nil, 30 * time.Second},
	}
	for _, st := range steps {
		if err := d.waitFor(st.wait, st.limit); err != nil {
			p.Kill()
			return 0, err
		}
		press(st.keys...)
	}

	// The restore streams: press ? every b.every until the checks screen is up.
	d.measure(true)
	finished := make(chan struct{})
	go func() {
		t := time.NewTicker(b.every)
		defer t.Stop()
		for {
			select {
			case <-finished:
				return
			case <-t.C:
				d.sent(time.Now())
				if _, err := inW.Write([]byte("?")); err != nil {
					return
				}
			}
		}
	}()
	err = d.waitFor("Integrity checks of", 30*time.Minute)
	close(finished)
	d.measure(false)
	if err != nil {
		p.Kill()
		return 0, err
	}
	// Quit, which asks first and drops the scratch database. Any help shown takes the
	// first key, so press q until it asks.
	for i := 0; ; i++ {
		press("q")
		if d.waitFor("(y/n)", time.Second) == nil {
			break
		}
		if i == 5 {
			p.Kill()
			return 0, errors.New("the console did not ask before quitting")
		}
	}
	press("y")
	select {
	case err := <-done:
		if err != nil {
			return 0, err
		}
	case <-time.After(time.Minute):
		p.Kill()
		return 0, errors.New("the console did not quit")
	}
	work.Wait()

	lat, toIn, uv, frames, ft := d.results()
	b.latency, b.toInput, b.updateView = append(b.latency, lat...), append(b.toInput, toIn...), append(b.updateView, uv...)
	b.frames, b.frameTime = b.frames+frames, b.frameTime+ft

	incs, err := checklists.List(state)
	if err != nil || len(incs) != 1 {
		return 0, fmt.Errorf("reading the journal: %v (%d incidents)", err, len(incs))
	}
	inc, _, err := checklists.ReadJournal(incs[0].Path)
	if err != nil {
		return 0, err
	}
	if len(inc.Restores) != 1 || inc.Restores[0].Result != checklists.ResultOK {
		return 0, fmt.Errorf("the journal's restores: %+v", inc.Restores)
	}
	return inc.Restores[0].Duration, nil
}

func keyPress(k string) tea.KeyPressMsg {
	switch k {
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "down":
		return tea.KeyPressMsg{Code: tea.KeyDown}
	}
	r := []rune(k)
	return tea.KeyPressMsg{Code: r[0], Text: k}
}

func (b *bench) report() {
	fmt.Println()
	fmt.Printf("load average now: %s; %d cores\n", loadavg(), runtime.NumCPU())
	if len(b.bare) > 0 && len(b.console) > 0 {
		mb, mc := median(b.bare), median(b.console)
		fmt.Printf("restore, median of %d: bare %.2f s, console %.2f s\n", len(b.bare), mb.Seconds(), mc.Seconds())
		ratio := mb.Seconds() / mc.Seconds()
		cb, cc := median(b.bareCPU), median(b.consoleCPU)
		fmt.Printf("this process's CPU per run, medians: bare %.2f s, console %.2f s: the console costs %+.2f s, %.1f%% of one core over the console's restore\n",
			cb.Seconds(), cc.Seconds(), (cc - cb).Seconds(), (cc-cb).Seconds()/mc.Seconds()*100)
		fmt.Printf("throughput with the console attached / without: %.3f (medians); per round %s; median of rounds %.3f   target >= 0.98 %s\n",
			ratio, fmtRatios(b.pairs), medianF(b.pairs), verdict(medianF(b.pairs) >= 0.98))
	}
	if len(b.latency) > 0 {
		p50, p99, mx := percentile(b.latency, 50), percentile(b.latency, 99), percentile(b.latency, 100)
		fmt.Printf("keypress to frame (%d presses): p50 %s  p99 %s  max %s   target max <= 100ms %s\n",
			len(b.latency), ms(p50), ms(p99), ms(mx), verdict(mx <= 100*time.Millisecond))
		fmt.Printf("  of which keypress to Update: p50 %s  p99 %s  max %s\n", ms(percentile(b.toInput, 50)), ms(percentile(b.toInput, 99)), ms(percentile(b.toInput, 100)))
		fmt.Printf("  Update+View of one message: p50 %s  p99 %s  max %s (%d messages)\n",
			ms(percentile(b.updateView, 50)), ms(percentile(b.updateView, 99)), ms(percentile(b.updateView, 100)), len(b.updateView))
		if b.frames > 0 {
			fmt.Printf("  frames written during restores: %d, %.1f/s\n", b.frames, float64(b.frames)/b.frameTime.Seconds())
		}
	}
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

func fmtRatios(r []float64) string {
	var s []string
	for _, x := range r {
		s = append(s, fmt.Sprintf("%.3f", x))
	}
	return strings.Join(s, " ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianF(fs []float64) float64 {
	if len(fs) == 0 {
		return 0
	}
	s := append([]float64(nil), fs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile by nearest rank; 100 is the maximum.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (p*len(s)+99)/100 - 1
	return s[min(max(i, 0), len(s)-1)]
}

// cpuTime is this process's CPU time so far (the decoding and the console; not
// pg_restore's or the server's).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func numGC() uint32 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.NumGC
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// driver wraps the console's root model to see what the program does with it: which
// keys Update has handled, and the frame View returned after them.
type driver struct {
	inner tea.Model

	mu        sync.Mutex
	content   string // the last frame, as text
	on        bool   // measuring
	sentAt    []time.Time
	handled   int   // ? presses Update has seen
	toFlush   []int // presses whose frame View has produced but the renderer not yet written
	flushedAt map[int]time.Time
	updatedAt map[int]time.Time
	uv        []time.Duration
	frames    int
	started   time.Time
	stopped   time.Time

	lastUpdate time.Duration // of the message View follows; only the event loop touches it
}

func (d *driver) Init() tea.Cmd { return d.inner.Init() }

func (d *driver) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	start := time.Now()
	m, cmd := d.inner.Update(msg)
	d.inner = m
	d.mu.Lock()
	if k, ok := msg.(tea.KeyPressMsg); ok && d.on && k.String() == "?" {
		i := d.handled
		d.handled++
		d.updatedAt[i] = start
		d.toFlush = append(d.toFlush, -1-i) // marked: Update done, View not yet
	}
	d.mu.Unlock()
	d.lastUpdate = time.Since(start)
	return d, cmd
}

func (d *driver) View() tea.View {
	start := time.Now()
	v := d.inner.View()
	took := time.Since(start) + d.lastUpdate
	d.mu.Lock()
	if d.on {
		d.uv = append(d.uv, took)
	}
	for j, i := range d.toFlush {
		if i < 0 {
			d.toFlush[j] = -1 - i // its frame exists now
		}
	}
	d.content = v.Content
	d.mu.Unlock()
	return v
}

func (d *driver) measure(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.on = on
	if on {
		d.sentAt, d.handled, d.toFlush = nil, 0, nil
		d.flushedAt, d.updatedAt = map[int]time.Time{}, map[int]time.Time{}
		d.uv, d.frames, d.started = nil, 0, time.Now()
	} else {
		d.stopped = time.Now()
	}
}

func (d *driver) sent(t time.Time) {
	d.mu.Lock()
	d.sentAt = append(d.sentAt, t)
	d.mu.Unlock()
}

// flushed is called when the renderer writes a frame to the terminal.
func (d *driver) flushed(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.on {
		return
	}
	d.frames++
	keep := d.toFlush[:0]
	for _, i := range d.toFlush {
		if i < 0 {
			keep = append(keep, i)
			continue
		}
		d.flushedAt[i] = t
	}
	d.toFlush = keep
}

func (d *driver) results() (lat, toInput, uv []time.Duration, frames int, span time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, s := range d.sentAt {
		if f, ok := d.flushedAt[i]; ok {
			lat = append(lat, f.Sub(s))
		}
		if u, ok := d.updatedAt[i]; ok {
			toInput = append(toInput, u.Sub(s))
		}
	}
	return lat, toInput, d.uv, d.frames, d.stopped.Sub(d.started)
}

// waitFor waits until the frame shows want.
func (d *driver) waitFor(want string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		d.mu.Lock()
		content := d.content
		d.mu.Unlock()
		text := ansi.Strip(content)
		if strings.Contains(text, want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the console never showed %q; it shows:\n%s", want, text)
		}
		// Waiting out a restore, look less often: this process is the one measured.
		time.Sleep(min(limit/500, 250*time.Millisecond))
	}
}

// frameWriter is the terminal: the renderer writes each frame to it in one go.
type frameWriter struct{ d *driver }

func (w *frameWriter) Write(p []byte) (int, error) {
	w.d.flushed(time.Now())
	return len(p), nil
}
