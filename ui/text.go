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
func indent(text string, w, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(wrap(text, w-n), "\n")
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
