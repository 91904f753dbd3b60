package ui

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/viewport"

	"drconsole/recovery"
)

var keyRows = key.NewBinding(key.WithKeys("pgup", "pgdown"), key.WithHelp("pgup/pgdn", "scroll rows"))

// rowsTable is each table's rows after a restore — in the archive, the restored copy and
// the live database — as a list scrolled with pgup/pgdn. The tables whose copy does not
// hold the archive's rows come first: on a small screen they are the ones to see. The
// ones that match are listed all the same; they are the proof.
type rowsTable struct {
	rows      []recovery.TableRows
	bad       []string // tables whose copy differs from the archive, or lacks them
	uncounted int
	vp        viewport.Model // the rows' lines; its height is set where it is drawn
	width     int            // the lines in vp are for this width
}

// rowsSection: the blank line, the summary and the column header above the list.
const rowsSection = 3

func newRowsTable(rows []recovery.TableRows, w int) rowsTable {
	t := rowsTable{rows: slices.Clone(rows), vp: viewport.New()}
	rank := func(r recovery.TableRows) int {
		switch r.State() {
		case recovery.RowsDiffer, recovery.RowsMissing:
			return 0
		case recovery.RowsUncounted:
			return 1
		}
		return 2
	}
	slices.SortStableFunc(t.rows, func(a, b recovery.TableRows) int { return rank(a) - rank(b) })
	for _, r := range t.rows {
		switch r.State() {
		case recovery.RowsDiffer, recovery.RowsMissing:
			t.bad = append(t.bad, r.Name)
		case recovery.RowsUncounted:
			t.uncounted++
		}
	}
	t.resize(w)
	return t
}

// resize lays the lines out for a screen w wide.
func (t *rowsTable) resize(w int) {
	if t.width == w && t.vp.TotalLineCount() > 0 {
		return
	}
	t.width = w
	t.vp.SetWidth(max(w, 20))
	t.vp.SetContentLines(t.lines(Styles{}, w))
}

// columns: the state mark, the table's name and three counts.
func (t rowsTable) columns(w int) (nameW, numW int) {
	numW, nameW = len("restored"), len("table")
	for _, r := range t.rows {
		nameW = max(nameW, len([]rune(r.Name)))
		for _, n := range []int64{r.Archive, r.Restored, r.Live} {
			numW = max(numW, len(rowCount(n)))
		}
	}
	return min(nameW, max(w-2-10-3*(numW+2), 8)), numW
}

// lines are the list's lines, styled with st (the zero Styles: plain, for sizing).
func (t rowsTable) lines(st Styles, w int) []string {
	nameW, numW := t.columns(w)
	out := make([]string, 0, len(t.rows))
	for _, r := range t.rows {
		mark, style, good := "ok", st.Success, true
		switch r.State() {
		case recovery.RowsDiffer:
			mark, style, good = "DIFFERS", st.Danger, false
		case recovery.RowsMissing:
			mark, style, good = "MISSING", st.Danger, false
		case recovery.RowsUncounted:
			mark, style, good = "?", st.Warning, false
		}
		// A name too long for the screen ends in …: cut where it shows, never silently.
		line := fmt.Sprintf("  %-10s%-*s  %*s  %*s  %*s", mark, nameW, ansiCut(r.Name, nameW), numW, rowCount(r.Archive), numW, rowCount(r.Restored), numW, rowCount(r.Live))
		if good { // only the mark in colour: the counts read plainly
			line = "  " + style.Render(fmt.Sprintf("%-10s", mark)) + line[12:]
		} else { // the whole line: it is what the operator must see
			line = style.Render(line)
		}
		out = append(out, strings.TrimRight(line, " "))
	}
	return out
}

// want is the lines the whole table takes.
func (t rowsTable) want() int { return rowsSection + len(t.rows) }

// scroll moves the list a page of page lines.
func (t *rowsTable) scroll(k string, page int) {
	t.vp.SetHeight(max(page, 1))
	switch k {
	case "pgdown":
		t.vp.PageDown()
	case "pgup":
		t.vp.PageUp()
	}
}

// view draws the table in at most h lines (h >= rowsSection+1): the summary, the column
// header, as many rows as fit, and, when not all do, which ones are shown.
func (t rowsTable) view(st Styles, w, h int) string {
	var b strings.Builder
	b.WriteString("\n")
	switch n := len(t.rows); {
	case len(t.bad) > 0:
		b.WriteString(st.Danger.Render(ansiCut(fmt.Sprintf("Rows: %d of %d tables DIFFER from the archive (listed first): %s", len(t.bad), n, strings.Join(t.bad, ", ")), w)) + "\n")
	case t.uncounted > 0:
		b.WriteString(st.Warning.Render(ansiCut(fmt.Sprintf("Rows: %d of %d tables as in the archive; %d not counted (?)", n-t.uncounted, n, t.uncounted), w)) + "\n")
	default:
		b.WriteString(st.Success.Render(fmt.Sprintf("Rows: %d tables, every row as in the archive", n)) + "\n")
	}
	nameW, numW := t.columns(w)
	b.WriteString(st.Muted.Render(fmt.Sprintf("  %-10s%-*s  %*s  %*s  %*s", "", nameW, "Table", numW, "archive", numW, "restored", numW, "live")) + "\n")
	list := h - rowsSection
	if list < len(t.rows) {
		list-- // the line that says which rows are shown
	}
	vp := t.vp
	vp.SetWidth(max(w, 20))
	vp.SetContentLines(t.lines(st, w))
	vp.SetHeight(max(list, 1))
	vp.SetYOffset(t.vp.YOffset()) // within the height it has here
	for _, l := range strings.Split(vp.View(), "\n") {
		b.WriteString(strings.TrimRight(l, " ") + "\n")
	}
	if list < len(t.rows) {
		from := vp.YOffset() + 1
		to := min(vp.YOffset()+max(list, 1), len(t.rows))
		b.WriteString(st.Muted.Render(fmt.Sprintf("  tables %d–%d of %d · pgup/pgdn for more", from, to, len(t.rows))) + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// rowCount writes a row count; ? when it is not known.
func rowCount(n int64) string {
	if n < 0 {
		return "?"
	}
	return strconv.FormatInt(n, 10)
}
