package ui

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"drconsole/checklists"
	"drconsole/storage"
)

// backupsScreen lists every backup of every location in one table: the operator picks
// the one to restore. Unreachable locations are shown as such.
type backupsScreen struct {
	s       *session
	step    int
	loaded  bool
	catalog storage.Catalog
	shown   []storage.Backup
	cur     cursor
	filter  string
	before  time.Time
	sortBy  int
	editing int // 0 none, 1 filter, 2 before
	field   field
}

var sortNames = []string{"newest first", "oldest first", "largest first", "by location"}

type catalogListedMsg struct{ catalog storage.Catalog }

var (
	keyBefore  = key.NewBinding(key.WithKeys("b"), key.WithHelp("b", "before a time"))
	keySort    = key.NewBinding(key.WithKeys("o"), key.WithHelp("o", "sort"))
	keyChoose  = key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "restore this"))
	keyRefresh = key.NewBinding(key.WithKeys("ctrl+r"), key.WithHelp("ctrl+r", "list again"))
)

func newBackupsScreen(s *session, step int) *backupsScreen {
	return &backupsScreen{s: s, step: step}
}

func (bs *backupsScreen) init() tea.Cmd {
	ctx, locs := bs.s.opt.Context, append([]storage.Location(nil), bs.s.opt.Locations...)
	bs.loaded = false
	return func() tea.Msg { return catalogListedMsg{storage.ListAll(ctx, locs)} }
}

func (bs *backupsScreen) apply() {
	bs.shown = nil
	f := strings.ToLower(bs.filter)
	for _, b := range bs.catalog.Backups {
		if f != "" && !strings.Contains(strings.ToLower(b.Name+" "+b.Location), f) {
			continue
		}
		if !bs.before.IsZero() && !b.SortTime().Before(bs.before) {
			continue
		}
		bs.shown = append(bs.shown, b)
	}
	switch bs.sortBy {
	case 1:
		sort.SliceStable(bs.shown, func(i, j int) bool { return bs.shown[i].SortTime().Before(bs.shown[j].SortTime()) })
	case 2:
		sort.SliceStable(bs.shown, func(i, j int) bool { return bs.shown[i].Size > bs.shown[j].Size })
	case 3:
		sort.SliceStable(bs.shown, func(i, j int) bool { return bs.shown[i].Location < bs.shown[j].Location })
	}
	bs.cur.setLen(len(bs.shown))
}

func (bs *backupsScreen) update(msg tea.Msg) (screen, tea.Cmd) {
	s := bs.s
	switch msg := msg.(type) {
	case catalogListedMsg:
		bs.loaded, bs.catalog = true, msg.catalog
		bs.apply()
	case tea.KeyPressMsg:
		k := msg.String()
		if bs.editing != 0 {
			switch k {
			case "esc":
				bs.editing = 0
				return bs, nil
			case "enter":
				v := strings.TrimSpace(bs.field.Value())
				if bs.editing == 1 {
					bs.filter = v
				} else if v == "" {
					bs.before = time.Time{}
				} else {
					t, err := parseWhen(v)
					if err != nil {
						return bs, status(err.Error())
					}
					bs.before = t
				}
				bs.editing = 0
				bs.apply()
				return bs, nil
			}
			var cmd tea.Cmd
			bs.field, cmd = bs.field.Update(msg)
			if bs.editing == 1 { // filter as you type
				bs.filter = bs.field.Value()
				bs.apply()
			}
			return bs, cmd
		}
		if bs.cur.move(k) {
			return bs, nil
		}
		switch {
		case key.Matches(msg, keyFilter):
			bs.editing, bs.field = 1, newField(s, "/", false)
			bs.field.SetValue(bs.filter)
			return bs, bs.field.Focus()
		case key.Matches(msg, keyBefore):
			bs.editing, bs.field = 2, newField(s, "taken before (UTC, YYYY-MM-DD HH:MM): ", false)
			return bs, bs.field.Focus()
		case key.Matches(msg, keySort):
			bs.sortBy = (bs.sortBy + 1) % len(sortNames)
			bs.apply()
		case key.Matches(msg, keyRefresh):
			return bs, bs.init()
		case key.Matches(msg, keyChoose) && len(bs.shown) > 0:
			b := bs.shown[bs.cur.i]
			var loc storage.Location
			for _, l := range s.opt.Locations {
				if l.Name() == b.Location {
					loc = l
				}
			}
			var taken *time.Time
			if t := b.SortTime(); !t.IsZero() {
				taken = &t
			}
			rec := s.record(checklists.Event{Type: checklists.EventBackupChosen, Step: bs.step, Backup: b.Name, Location: b.Location, BackupTime: taken, Bytes: b.Size})
			return bs, tea.Sequence(rec, push(newPreflightScreen(s, bs.step, loc, b)))
		}
	}
	return bs, nil
}

// parseWhen reads a time the operator typed, in UTC.
func parseWhen(v string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time: write YYYY-MM-DD HH:MM (UTC)", v)
}

// meetsRPO reports whether restoring b loses no more than the RPO of data, counted from
// when the incident started.
func (s *session) meetsRPO(b storage.Backup) bool {
	start := s.now
	if s.inc != nil {
		start = s.inc.Started
	}
	rpo := s.scenario.RPO
	return rpo == 0 || start.Sub(b.SortTime()) <= rpo
}

func (bs *backupsScreen) view(w, h int) string {
	s := bs.s
	var b strings.Builder
	title := "Choose the backup to restore"
	b.WriteString(s.st.Header.Render(title) + s.st.Muted.Render(" · "+sortNames[bs.sortBy]) + "\n")
	var filters []string
	if bs.filter != "" {
		filters = append(filters, "matching "+fmt.Sprintf("%q", bs.filter))
	}
	if !bs.before.IsZero() {
		filters = append(filters, "taken before "+bs.before.Format("2006-01-02 15:04")+" UTC")
	}
	if len(filters) > 0 {
		b.WriteString(s.st.Warning.Render("Showing backups "+strings.Join(filters, ", ")) + "\n")
	}
	switch bs.editing {
	case 1, 2:
		b.WriteString(bs.field.View() + "\n")
	}
	if !bs.loaded {
		b.WriteString(s.st.Muted.Render("Listing every location…") + "\n")
		return b.String()
	}
	var bad []string
	for _, l := range bs.catalog.Locations {
		if !l.Reachable {
			bad = append(bad, s.st.Danger.Render(fmt.Sprintf("✗ %s (%s) unreachable: %s", l.Name, l.Where, l.Err)))
		}
	}
	nameW := max(w-2-61, 0)
	row := func(when, ago, size, loc, enc, rpo, name string) string {
		r := fmt.Sprintf("%-16s  %6s  %10s  %-10s  %-3s  %-4s", when, ago, size, loc, enc, rpo)
		if nameW > 4 {
			r += "  " + ansiCut(name, nameW)
		}
		return r
	}
	b.WriteString("  " + s.st.Muted.Render(row("Taken (UTC)", "Age", "Size", "Location", "Enc", "RPO", "Name")) + "\n")
	if len(bs.shown) == 0 {
		b.WriteString(s.st.Muted.Render("  No backups match.") + "\n")
	}
	listH := h - 5 - len(bad) - strings.Count(b.String(), "\n") + 1
	for _, l := range s.rows(bs.cur, listH, func(i int) string {
		bk := bs.shown[i]
		t := bk.SortTime()
		enc, rpo := "no", "ok"
		if bk.Encrypted {
			enc = "yes"
		}
		if !s.meetsRPO(bk) {
			rpo = "old"
		}
		return row(t.UTC().Format("2006-01-02 15:04"), age(s.now, t), bytesText(bk.Size), bk.Location, enc, rpo, bk.Name)
	}) {
		b.WriteString(l + "\n")
	}
	if len(bs.shown) > 0 {
		bk := bs.shown[bs.cur.i]
		b.WriteString("\n" + s.st.Accent.Render(ansiCut(bk.Name, w)) + "\n")
		if !s.meetsRPO(bk) {
			b.WriteString(s.st.Warning.Render(fmt.Sprintf("older than the %s RPO before the incident started", checklists.FormatDuration(s.scenario.RPO))) + "\n")
		}
	}
	for _, l := range bad {
		b.WriteString(l + "\n")
	}
	return b.String()
}

func ansiCut(s string, w int) string {
	r := []rune(s)
	if len(r) <= w {
		return s
	}
	if w <= 1 {
		return string(r[:max(w, 0)])
	}
	return string(r[:w-1]) + "…"
}

func (bs *backupsScreen) title() string { return "backups" }
func (bs *backupsScreen) keys() []key.Binding {
	return []key.Binding{keyChoose, keyFilter, keyBefore, keySort, keyRefresh, keyBack}
}
func (bs *backupsScreen) typing() bool { return bs.editing != 0 }
func (bs *backupsScreen) busy() bool   { return false }
