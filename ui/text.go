package ui

import (
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/x/ansi"

	"drconsole/checklists"
)

// wrap word-wraps text to w columns.
func wrap(text string, w int) string {
	return ansi.Wordwrap(text, max(w, 10), "")
}

// indent wraps text to w columns and indents every line by n spaces.
func indent(text string, w, n int) string { return indentWrapped(wrap(text, w-n), n) }

// indentWrapped indents every line of wrapped text by n spaces.
func indentWrapped(wrapped string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(wrapped, "\n")
	for i := range lines {
		lines[i] = pad + lines[i]
	}
	return strings.Join(lines, "\n")
}

// age says how long ago t was, briefly: 3m, 5h, 2d.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "future"
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func bytesText(n int64) string { return checklists.HumanBytes(n) }

// contactOf finds a role's e-mail in the runbook.
func contactOf(rb *checklists.Runbook, role string) string {
	for _, list := range [][]checklists.Contact{rb.Contacts.Primary, rb.Contacts.External} {
		for _, c := range list {
			if strings.EqualFold(c.Role, role) && c.Email != "" {
				return role + " <" + c.Email + ">"
			}
		}
	}
	return role
}

// wrapAtSpaces word-wraps plain text to w columns at its spaces only. A word too long for
// a line, a path, is broken after one of its slashes (never at a hyphen inside a name,
// as wrap would) so that each line is a directory or a file name someone can read and
// copy; only a single name longer than a line is broken inside it.
func wrapAtSpaces(text string, w int) string {
	w = max(w, 10)
	var out []string
	for _, para := range strings.Split(text, "\n") {
		var lines []string
		cur := ""
		for i, word := range strings.Split(para, " ") {
			sep := " "
			if i == 0 {
				sep = ""
			}
			if ansi.StringWidth(cur+sep+word) <= w {
				cur += sep + word
				continue
			}
			if ansi.StringWidth(word) <= w {
				lines, cur = append(lines, cur), word
				continue
			}
			for j, piece := range pathPieces(word, w) {
				switch {
				case j == 0 && cur == "":
					cur = piece
				case j == 0 && ansi.StringWidth(cur+sep+piece) <= w: // the path starts on this line
					cur += sep + piece
				case j > 0 && ansi.StringWidth(cur+piece) <= w:
					cur += piece
				default:
					lines, cur = append(lines, cur), piece
				}
			}
		}
		out = append(out, append(lines, cur)...)
	}
	return strings.Join(out, "\n")
}

// pathPieces cuts a path after each slash, and a piece still wider than w into pieces w wide.
func pathPieces(path string, w int) []string {
	var out []string
	for _, p := range strings.SplitAfter(path, "/") {
		for ansi.StringWidth(p) > w {
			out, p = append(out, ansi.Cut(p, 0, w)), ansi.Cut(p, w, ansi.StringWidth(p))
		}
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// indentAtSpaces is indent with wrapAtSpaces: for text that holds paths.
func indentAtSpaces(text string, w, n int) string {
	return indentWrapped(wrapAtSpaces(text, w-n), n)
}
