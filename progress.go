package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"drconsole/checklists"
	"drconsole/recovery"
	"drconsole/storage"
)

// progressPrinter shows a restore, verify or backup on stderr: on a terminal, one line
// rewritten in place plus drconsole's own stage messages; piped, only the stage
// messages, so cron mail stays short. pg_restore's own lines go to the journal only.
type progressPrinter struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	quiet    bool // --json: nothing but errors
	verb     string
	start    time.Time
	lastLine int
	last     recovery.Event       // what is known so far: events carry only some figures
	onEvent  func(recovery.Event) // e.g. the incident journal
}

func newProgress(a *app, verb string, quiet bool) *progressPrinter {
	return &progressPrinter{w: a.stderr, tty: a.isTerminal(a.stderr), quiet: quiet, verb: verb, start: time.Now()}
}

func (p *progressPrinter) Report(e recovery.Event) {
	if p.onEvent != nil {
		p.onEvent(e)
	}
	if p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = recovery.MergeFigures(p.last, e)
	if e.Message != "" {
		if e.Tool {
			return
		}
		p.clear()
		fmt.Fprintf(p.w, "%s: %s\n", p.verb, e.Message)
		return
	}
	if e.Final {
		p.clear()
		return
	}
	if !p.tty || e.Stage != recovery.StageStream && e.Stage != recovery.StageDump {
		return
	}
	line := p.figures(p.last)
	p.clear()
	fmt.Fprint(p.w, line)
	p.lastLine = len(line)
}

func (p *progressPrinter) clear() {
	if p.lastLine > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.lastLine))
		p.lastLine = 0
	}
}

func (p *progressPrinter) figures(e recovery.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", p.verb, humanBytes(e.Read))
	if e.Size > 0 {
		fmt.Fprintf(&b, " / %s (%d%%)", humanBytes(e.Size), e.Read*100/max(e.Size, 1))
	}
	if e.Rate > 0 {
		fmt.Fprintf(&b, "  %s/s", humanBytes(int64(e.Rate)))
	}
	if e.ETA >= 0 && e.Size > 0 {
		fmt.Fprintf(&b, "  ETA %s", shortDuration(e.ETA))
	}
	if e.Decompressed > 0 {
		fmt.Fprintf(&b, "  dump %s", humanBytes(e.Decompressed))
	}
	if e.Phase != "" {
		fmt.Fprintf(&b, "  [%s]", e.Phase)
	}
	if e.TablesTotal > 0 {
		fmt.Fprintf(&b, "  tables %d/%d", e.TablesDone, e.TablesTotal)
	}
	if e.Table != "" && (e.Phase == "" || e.Phase == "load") { // after the load, no table is current
		fmt.Fprintf(&b, " %s", storage.Printable(e.Table))
		if e.Rows > 0 {
			fmt.Fprintf(&b, " %s rows", checklists.GroupDigits(e.Rows))
		}
	}
	if e.IndexesTotal > 0 {
		fmt.Fprintf(&b, "  indexes %d/%d", e.IndexesDone, e.IndexesTotal)
	}
	fmt.Fprintf(&b, "  %s", shortDuration(time.Since(p.start)))
	// One terminal line, rewritten in place: a longer one would scroll. What is cut ends in
	// …, and never inside a character.
	if r := []rune(b.String()); len(r) > 119 {
		return string(r[:118]) + "…"
	}
	return b.String()
}

// humanBytes is the report's byte format, so the terminal and the report agree.
func humanBytes(n int64) string { return checklists.HumanBytes(n) }

func shortDuration(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}
