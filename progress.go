package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"drconsole/checklists"
	"drconsole/recovery"
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
	line := p.figures(e)
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
	if e.TablesTotal > 0 {
		fmt.Fprintf(&b, "  tables %d/%d", e.TablesDone, e.TablesTotal)
	}
	if e.Table != "" {
		fmt.Fprintf(&b, " %s", e.Table)
	}
	fmt.Fprintf(&b, "  %s", shortDuration(time.Since(p.start)))
	s := b.String()
	if len(s) > 119 {
		s = s[:119]
	}
	return s
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
