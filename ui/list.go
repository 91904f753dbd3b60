package ui

import "charm.land/bubbles/v2/key"

// cursor is a selection in a list of n items.
type cursor struct{ i, n int }

// move handles up/down/home/end; it reports whether the key was one of them.
func (c *cursor) move(k string) bool {
	switch k {
	case "up", "k":
		if c.i > 0 {
			c.i--
		}
	case "down", "j":
		if c.i < c.n-1 {
			c.i++
		}
	case "home", "g":
		c.i = 0
	case "end", "G":
		c.i = max(c.n-1, 0)
	case "pgup":
		c.i = max(c.i-10, 0)
	case "pgdown":
		c.i = max(min(c.i+10, c.n-1), 0)
	default:
		return false
	}
	return true
}

func (c *cursor) setLen(n int) {
	c.n = n
	if c.i >= n {
		c.i = max(n-1, 0)
	}
}

// window returns the range of rows to show so that the selection is visible in h rows.
func (c cursor) window(h int) (from, to int) {
	if h <= 0 {
		return 0, 0
	}
	from = 0
	if c.i >= h {
		from = c.i - h + 1
	}
	return from, min(from+h, c.n)
}

// rows renders the visible rows with a marker on the selected one.
func (s *session) rows(c cursor, h int, row func(i int) string) []string {
	from, to := c.window(h)
	var out []string
	for i := from; i < to; i++ {
		if i == c.i {
			out = append(out, s.st.Selected.Render("> "+row(i)))
		} else {
			out = append(out, "  "+row(i))
		}
	}
	return out
}

var keyMove = key.NewBinding(key.WithKeys("up", "down"), key.WithHelp("↑/↓", "move"))
