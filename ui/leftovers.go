package ui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"drconsole/recovery"
)

// leftoversScreen lists what earlier restores left on the server — scratch copies of
// restores that were killed or lost their server, and the kept copies swaps made — with
// size and age, and drops one when the operator confirms.
type leftoversScreen struct {
	s       *session
	list    []recovery.Leftover
	cur     cursor
	confirm bool
	working bool
	err     error
	loaded  bool
	// seen hands each fresh look at the server to the screen that opened this one, so
	// that what it says (the start screen's summary) is not the look before a drop.
	seen func(serverCheckedMsg)
}

type (
	// serverCheckedMsg: the start screen's look at the server: what was repaired, what is left.
	serverCheckedMsg struct {
		repaired  []string
		leftovers []recovery.Leftover
		err       error
	}
	leftoverDroppedMsg struct {
		name string
		err  error
	}
)

var (
	keyLeftovers = key.NewBinding(key.WithKeys("l"), key.WithHelp("l", "leftovers on the server"))
	keyDrop      = key.NewBinding(key.WithKeys("d"), key.WithHelp("d", "drop"))
)

// checkServer repairs what an interrupted swap left (a database refusing connections is an
// outage, so this does not ask) and lists what earlier restores left on the server.
func checkServer(s *session) tea.Cmd {
	if s.opt.Conn == nil {
		return nil
	}
	ctx, conn := s.opt.Context, s.opt.Conn
	return func() tea.Msg {
		did, err := recovery.Repair(ctx, conn)
		if err != nil {
			return serverCheckedMsg{repaired: did, err: err}
		}
		list, err := recovery.FindLeftovers(ctx, conn)
		return serverCheckedMsg{repaired: did, leftovers: list, err: err}
	}
}

func newLeftoversScreen(s *session, list []recovery.Leftover, seen func(serverCheckedMsg)) *leftoversScreen {
	l := &leftoversScreen{s: s, list: list, loaded: true, seen: seen}
	l.cur.setLen(len(list))
	return l
}

func (l *leftoversScreen) init() tea.Cmd { return nil }

func (l *leftoversScreen) update(msg tea.Msg) (screen, tea.Cmd) {
	s := l.s
	switch msg := msg.(type) {
	case serverCheckedMsg:
		l.loaded, l.err, l.list = true, msg.err, msg.leftovers
		l.cur.setLen(len(l.list))
		if l.seen != nil {
			l.seen(msg)
		}
	case leftoverDroppedMsg:
		l.working, l.err = false, msg.err
		note := "dropped " + msg.name + " (left on the server by an earlier restore)"
		if msg.err != nil {
			note = "could not drop " + msg.name + ": " + msg.err.Error()
		}
		return l, tea.Batch(s.note(note), checkServer(s))
	case tea.KeyPressMsg:
		k := msg.String()
		if l.confirm {
			l.confirm = false
			if (k == "y" || k == "Y") && l.cur.n > 0 {
				name, ctx, conn := l.list[l.cur.i].Name, s.opt.Context, s.opt.Conn
				l.working = true
				return l, func() tea.Msg { return leftoverDroppedMsg{name, recovery.DropLeftover(ctx, conn, name)} }
			}
			return l, nil
		}
		if l.cur.move(k) {
			return l, nil
		}
		if key.Matches(msg, keyDrop) && l.cur.n > 0 && !l.working && l.list[l.cur.i].Droppable() {
			l.confirm = true
		}
	}
	return l, nil
}

func (l *leftoversScreen) view(w, h int) string {
	s := l.s
	var b strings.Builder
	b.WriteString(s.st.Header.Render("Left on the server by earlier restores") + "\n")
	if s.opt.Conn != nil {
		b.WriteString(s.st.Muted.Render(s.opt.Conn.Server()) + "\n")
	}
	b.WriteString("\n")
	switch {
	case l.err != nil:
		b.WriteString(s.st.Danger.Render(wrap("✗ "+l.err.Error(), w)) + "\n")
	case !l.loaded:
		b.WriteString(s.st.Muted.Render("Looking…") + "\n")
	case len(l.list) == 0:
		b.WriteString(s.st.Success.Render("Nothing: no scratch or kept copies are left.") + "\n")
		return b.String()
	}
	if l.cur.n > 0 {
		sel := l.list[l.cur.i]
		switch {
		case l.working:
			b.WriteString(s.st.Accent.Render("Dropping "+sel.Name+"…") + "\n")
		case l.confirm && sel.Role == recovery.RoleKept:
			b.WriteString(s.st.Danger.Render(wrap("Drop "+sel.Name+"? It holds the data a restore replaced, kept for rollback and forensics; this cannot be undone. (y/n)", w)) + "\n")
		case l.confirm:
			b.WriteString(s.st.Danger.Render(wrap("Drop "+sel.Name+", the copy of a restore that never went live? (y/n)", w)) + "\n")
		case sel.InUse:
			b.WriteString(s.st.Muted.Render(wrap(sel.Name+" belongs to a restore that is running now: it is not dropped.", w)) + "\n")
		case !sel.Marked:
			b.WriteString(s.st.Muted.Render(wrap(sel.Name+" is only named like a restore's database; it has no drconsole mark, so drconsole does not drop it.", w)) + "\n")
		default:
			b.WriteString(s.st.Muted.Render("d drops the selected database, after you confirm.") + "\n")
		}
	}
	b.WriteString("\n")
	// Two lines each, so nothing the operator decides on is cut at 80 columns.
	cur := l.cur
	from, to := cur.window(max((h-strings.Count(b.String(), "\n"))/2, 1))
	for i := from; i < to; i++ {
		x := l.list[i]
		head := x.What() + " " + x.Name
		if i == cur.i {
			b.WriteString(s.st.Selected.Render("> "+ansiCut(head, w-2)) + "\n")
		} else {
			b.WriteString("  " + ansiCut(head, w-2) + "\n")
		}
		b.WriteString(s.st.Muted.Render(indent(strings.Join(x.Facts(s.now), " · "), w, 4)) + "\n")
	}
	return b.String()
}

func (l *leftoversScreen) title() string { return "leftovers" }
func (l *leftoversScreen) keys() []key.Binding {
	return []key.Binding{keyMove, keyDrop, keyBack}
}
func (l *leftoversScreen) typing() bool { return false }
func (l *leftoversScreen) busy() bool   { return l.working }

// leftoverSummary is the start screen's line about what is left on the server.
func leftoverSummary(list []recovery.Leftover) string {
	var scratch, kept int
	var bytes int64
	for _, l := range list {
		if l.InUse {
			continue
		}
		if l.Role == recovery.RoleKept {
			kept++
		} else {
			scratch++
		}
		bytes += max(l.Size, 0)
	}
	if scratch+kept == 0 {
		return ""
	}
	var parts []string
	if scratch > 0 {
		parts = append(parts, fmt.Sprintf("%d scratch cop%s of interrupted restores", scratch, plural(scratch, "y", "ies")))
	}
	if kept > 0 {
		parts = append(parts, fmt.Sprintf("%d kept cop%s of replaced databases", kept, plural(kept, "y", "ies")))
	}
	return fmt.Sprintf("Left on the server: %s (%s): l lists them.", strings.Join(parts, " and "), bytesText(bytes))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
