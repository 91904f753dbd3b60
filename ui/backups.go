package ui

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"drconsole/checklists"
	"drconsole/recovery"
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
	field   textinput.Model
	// sigs: who signed each backup looked at so far, by location and key; probing is the
	// one being read now. Only the highlighted backup is read (its first bytes, with the
	// key), so the list costs nothing to show.
	sigs    map[string]sigProbe
	probing string
}

// sigProbe is what reading a backup's first bytes said about its signature.
type sigProbe struct {
	sig recovery.Signature
	err error
}

type signatureProbedMsg struct {
	id  string
	sig recovery.Signature
	err error
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

// apply filters and orders the catalog. The highlight stays on the backup it was on when
// that is still shown; otherwise it goes to the default choice.
func (bs *backupsScreen) apply() {
	var was *storage.Backup
	if bs.cur.i < len(bs.shown) {
		b := bs.shown[bs.cur.i]
		was = &b
	}
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
	sort.SliceStable(bs.shown, func(i, j int) bool { return bs.less(bs.shown[i], bs.shown[j]) })
	bs.cur.setLen(len(bs.shown))
	if was != nil {
		for i, b := range bs.shown {
			if b.Location == was.Location && b.Key == was.Key {
				bs.cur.i = i
				return
			}
		}
	}
	bs.cur.i = bs.defaultChoice()
}

// less orders backups for the table. Files whose names the backup job does not make go
// after every recognised backup in every order: their time is only when the file was
// last written, and they must never look like the latest backup.
func (bs *backupsScreen) less(a, b storage.Backup) bool {
	if ra, rb := bs.rank(a), bs.rank(b); ra != rb {
		return ra < rb
	}
	ta, tb := a.SortTime(), b.SortTime()
	switch bs.sortBy {
	case 1:
		if !ta.Equal(tb) {
			return ta.Before(tb)
		}
	case 2:
		if a.Size != b.Size {
			return a.Size > b.Size
		}
	case 3:
		if a.Location != b.Location {
			return a.Location < b.Location
		}
	}
	if !ta.Equal(tb) {
		return ta.After(tb)
	}
	return a.Name > b.Name
}

// rank groups the table: the application's backups, then other applications' (a shared
// bucket), then files whose names no backup job makes.
func (bs *backupsScreen) rank(b storage.Backup) int {
	switch {
	case bs.ours(b):
		return 0
	case b.Recognized():
		return 1
	}
	return 2
}

// ours reports whether b is a backup of the application being recovered.
func (bs *backupsScreen) ours(b storage.Backup) bool { return b.Of(bs.s.opt.Prefixes) }

// defaultChoice is the row highlighted first: the newest full backup of the application
// shown, else the first row.
func (bs *backupsScreen) defaultChoice() int {
	best := -1
	for i, b := range bs.shown {
		if b.Kind == storage.KindFull && bs.ours(b) && (best < 0 || b.SortTime().After(bs.shown[best].SortTime())) {
			best = i
		}
	}
	return max(best, 0)
}

func (bs *backupsScreen) update(msg tea.Msg) (screen, tea.Cmd) {
	s := bs.s
	switch msg := msg.(type) {
	case catalogListedMsg:
		bs.loaded, bs.catalog = true, msg.catalog
		bs.apply()
		return bs, bs.probe()
	case signatureProbedMsg:
		if bs.sigs == nil {
			bs.sigs = map[string]sigProbe{}
		}
		bs.sigs[msg.id], bs.probing = sigProbe{msg.sig, msg.err}, ""
		return bs, bs.probe() // the highlight may have moved on meanwhile
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
			return bs, bs.probe()
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

func probeID(b storage.Backup) string { return b.Location + "\x00" + b.Key }

// probe reads who signed the highlighted backup, unless it is known or a read is running.
func (bs *backupsScreen) probe() tea.Cmd {
	s := bs.s
	if bs.probing != "" || len(bs.shown) == 0 {
		return nil
	}
	b := bs.shown[bs.cur.i]
	id := probeID(b)
	if _, done := bs.sigs[id]; done {
		return nil
	}
	var loc storage.Location
	for _, l := range s.opt.Locations {
		if l.Name() == b.Location {
			loc = l
		}
	}
	bs.probing = id
	keys := recovery.Keys{Entities: s.opt.Keys.Entities, Passphrase: s.opt.Keys.Passphrase, Signers: s.opt.Keys.Signers}
	ctx := s.opt.Context
	return func() tea.Msg {
		if loc == nil {
			return signatureProbedMsg{id: id, err: fmt.Errorf("location %q is not configured", b.Location)}
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, err := recovery.Inspect(ctx, recovery.Source{Location: loc, Backup: b}, &keys)
		if err != nil {
			return signatureProbedMsg{id: id, err: err}
		}
		return signatureProbedMsg{id: id, sig: c.Signature}
	}
}

// signatureLine says who signed the highlighted backup, as far as is known yet.
func (bs *backupsScreen) signatureLine(b storage.Backup, w int) string {
	s := bs.s
	p, done := bs.sigs[probeID(b)]
	if !done {
		return s.st.Muted.Render("signature: reading…")
	}
	return bs.signatureText(p, len(s.opt.Keys.Signers) > 0, w)
}

// signatureText is what the first bytes said, wrapped: whose signature is what the
// ransomware question turns on.
func (bs *backupsScreen) signatureText(p sigProbe, trusted bool, w int) string {
	s := bs.s
	switch {
	case errors.Is(p.err, recovery.ErrNoKey):
		return s.st.Muted.Render(wrap("signature: read at pre-flight, where the passphrase is asked", w))
	case p.err != nil:
		return s.st.Danger.Render(wrap("✗ cannot be read: "+p.err.Error(), w))
	case p.sig.Trusted:
		return s.st.Success.Render(wrap("✓ "+p.sig.String()+", a trusted signer (verified as it streams)", w))
	case trusted && p.sig.Signed:
		return s.st.Danger.Render(wrap("✗ "+p.sig.String()+": not a trusted signer", w))
	case trusted:
		return s.st.Danger.Render(wrap("✗ not signed, and a trusted signer is required (--signer-key)", w))
	case p.sig.Signed:
		return s.st.Muted.Render(wrap(p.sig.String()+": not checked (no --signer-key)", w))
	}
	return s.st.Warning.Render(wrap("! not signed: nothing proves this backup is yours", w))
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
			for _, line := range strings.Split(wrap(fmt.Sprintf("✗ %s (%s) unreachable: %s", l.Name, l.Where, l.Err), w), "\n") {
				bad = append(bad, s.st.Danger.Render(line))
			}
		}
	}
	t := bs.table(w)
	b.WriteString("  " + s.st.Muted.Render(t.row("Taken (UTC)", "Age", "Size", "Location", "Enc", "RPO", "Name")) + "\n")
	if len(bs.shown) == 0 {
		b.WriteString(s.st.Muted.Render("  No backups match.") + "\n")
	}
	var detail []string
	if len(bs.shown) > 0 {
		detail = bs.detail(bs.shown[bs.cur.i], w)
	}
	listH := h - len(detail) - len(bad) - strings.Count(b.String(), "\n")
	for _, l := range s.rows(bs.cur, listH, func(i int) string {
		bk := bs.shown[i]
		t0 := bk.SortTime()
		enc, rpo := "no", "ok"
		if bk.Encrypted {
			enc = "yes"
		}
		switch {
		case !bs.ours(bk):
			rpo = "-" // another application's, or a file's time that says when it was written, not what it holds
		case !s.meetsRPO(bk):
			rpo = "old"
		}
		return t.row(t0.UTC().Format("2006-01-02 15:04"), age(s.now, t0), bytesText(bk.Size), ansiCut(bk.Location, t.loc), enc, rpo, shortName(bk, t.name))
	}) {
		b.WriteString(l + "\n")
	}
	for _, l := range detail {
		b.WriteString(l + "\n")
	}
	for _, l := range bad {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// backupTable is the table's column widths at one terminal width.
type backupTable struct {
	loc, size, name int
	enc             bool // the Enc column; narrow terminals leave it to the name's .gpg
}

func (bs *backupsScreen) table(w int) backupTable {
	t := backupTable{loc: len("Location"), size: len("Size"), enc: w >= 100}
	for _, b := range bs.catalog.Backups {
		t.loc = max(t.loc, len([]rune(b.Location)))
		t.size = max(t.size, len(bytesText(b.Size)))
	}
	t.loc = min(t.loc, 16)
	// marker, Taken, Age, Size, Location, RPO and the gaps between them
	used := 2 + 16 + 2 + 6 + 2 + t.size + 2 + t.loc + 2 + 3 + 2
	if t.enc {
		used += 3 + 2
	}
	t.name = max(w-used, 0)
	return t
}

func (t backupTable) row(when, ago, size, loc, enc, rpo, name string) string {
	r := fmt.Sprintf("%-16s  %6s  %*s  %-*s  ", when, ago, t.size, size, t.loc, loc)
	if t.enc {
		r += fmt.Sprintf("%-3s  ", enc)
	}
	r += fmt.Sprintf("%-3s", rpo)
	if t.name > 4 {
		r += "  " + name
	}
	return r
}

// shortName fits a backup's name into w columns keeping what the operator must read:
// the kind and the layers (.dump or .sql, .gz, .gpg). The date is in the Taken column,
// so a recognised name drops it first: "full …130000.dump.gz.gpg".
func shortName(b storage.Backup, w int) string {
	name := storage.Printable(b.Name)
	if len([]rune(name)) <= w {
		return name
	}
	suffix := ""
	if i := strings.IndexByte(name, '.'); i > 0 {
		suffix = name[i:]
	}
	if b.Recognized() && !b.Time.IsZero() {
		kind, short := string(b.Kind), string(b.Kind)
		if b.Kind == storage.KindIncremental {
			short = "incr"
		}
		for _, c := range []string{
			strings.TrimPrefix(name, b.Prefix+"_"),
			kind + " …" + b.Time.Format("150405") + suffix,
			short + " …" + b.Time.Format("150405") + suffix,
			short + " …" + suffix,
		} {
			if len([]rune(c)) <= w {
				return c
			}
		}
	}
	// Cut from the middle, keeping the layers' suffix whole where it leaves room.
	r := []rune(name)
	tail := len([]rune(suffix))
	if tail == 0 || tail > w-4 {
		tail = (w - 1) / 2
	}
	head := w - 1 - tail
	if head < 1 {
		return ansiCut(name, w)
	}
	return string(r[:head]) + "…" + string(r[len(r)-tail:])
}

// detail describes the highlighted backup under the table: its whole name, never cut,
// where it is kept and the layers its name says it has.
func (bs *backupsScreen) detail(bk storage.Backup, w int) []string {
	s := bs.s
	out := []string{""}
	for _, l := range strings.Split(ansi.Hardwrap(storage.Printable(bk.Name), w, false), "\n") {
		out = append(out, s.st.Accent.Render(l))
	}
	where := "in " + bk.Location
	for _, l := range bs.catalog.Locations {
		if l.Name == bk.Location && l.Where != "" {
			where += " (" + l.Where + ")"
		}
	}
	if bk.Key != "" && bk.Key != bk.Name {
		where += " as " + bk.Key
	}
	info := where + " · " + layers(bk)
	if bk.Recognized() && !bs.ours(bk) {
		info += fmt.Sprintf(" · another application's backup (%s_…), not %s's", bk.Prefix, strings.Join(bs.s.opt.Prefixes, " or "))
	}
	if !bk.Recognized() {
		info += " · not a name the backup job makes: written " + bk.Modified.UTC().Format("2006-01-02 15:04") + " UTC; its content is read at pre-flight"
	}
	for _, l := range strings.Split(wrap(info, w), "\n") {
		out = append(out, s.st.Muted.Render(l))
	}
	if bs.ours(bk) && !s.meetsRPO(bk) {
		out = append(out, s.st.Warning.Render(wrap(fmt.Sprintf("older than the %s RPO before the incident started", checklists.FormatDuration(s.scenario.RPO)), w)))
	}
	return append(out, strings.Split(bs.signatureLine(bk, w), "\n")...)
}

// layers says, outermost first, what the name says the file is.
func layers(b storage.Backup) string {
	var l []string
	if b.Encrypted {
		l = append(l, "OpenPGP")
	}
	switch b.Compression {
	case storage.CompressionGzip:
		l = append(l, "gzip")
	case storage.CompressionZstd:
		l = append(l, "zstd")
	}
	switch b.Format {
	case storage.FormatCustom:
		l = append(l, "custom dump")
	case storage.FormatPlain:
		l = append(l, "plain SQL")
	default:
		l = append(l, "format unknown")
	}
	return strings.Join(l, " → ")
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
