package ui

import (
	"image/color"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/textinput"
	"charm.land/lipgloss/v2"
)

// Theme is the console's colours as named roles. Screens never pick a colour; they use a
// role through Styles.
type Theme struct {
	Accent, Muted, Danger, Success, Warning color.Color
	Plain                                   bool // NO_COLOR: no colour at all
}

// DefaultTheme is the colour theme; PlainTheme is the one NO_COLOR asks for.
func DefaultTheme() Theme {
	return Theme{
		Accent:  lipgloss.Color("#5fafff"),
		Muted:   lipgloss.Color("#8a8a8a"),
		Danger:  lipgloss.Color("#ff5f5f"),
		Success: lipgloss.Color("#5fd75f"),
		Warning: lipgloss.Color("#ffaf00"),
	}
}

// PlainTheme has no colours: emphasis is bold and reverse only.
func PlainTheme() Theme { return Theme{Plain: true} }

// Styles are built from a theme in one place.
type Styles struct {
	Title, Header, Muted, Accent, Danger, Success, Warning, Selected, Drill, Bold lipgloss.Style
	Banner                                                                        lipgloss.Style // a drill's inject, over every screen
	Help                                                                          help.Styles
	Input                                                                         textinput.Styles
	BarFull, BarEmpty                                                             color.Color // the progress bar's; nil in the plain theme
}

func newStyles(t Theme) Styles {
	base := lipgloss.NewStyle()
	fg := func(c color.Color) lipgloss.Style {
		if t.Plain || c == nil {
			return base
		}
		return base.Foreground(c)
	}
	s := Styles{
		Title:    fg(t.Accent).Bold(true),
		Header:   base.Bold(true),
		Muted:    fg(t.Muted),
		Accent:   fg(t.Accent),
		Danger:   fg(t.Danger).Bold(true),
		Success:  fg(t.Success),
		Warning:  fg(t.Warning),
		Selected: fg(t.Accent).Bold(true),
		Drill:    fg(t.Warning).Bold(true).Reverse(true),
		Bold:     base.Bold(true),
		Banner:   base.Border(lipgloss.RoundedBorder()).Padding(0, 1),
	}
	if !t.Plain {
		s.Banner = s.Banner.BorderForeground(t.Warning)
	}
	s.Input = textinput.Styles{
		Focused: textinput.StyleState{Prompt: s.Bold, Text: base, Placeholder: s.Muted},
		Blurred: textinput.StyleState{Prompt: s.Muted, Text: s.Muted, Placeholder: s.Muted},
		Cursor:  textinput.CursorStyle{Color: t.Accent, Blink: false},
	}
	s.BarFull, s.BarEmpty = t.Accent, t.Muted
	if t.Plain {
		s.BarFull, s.BarEmpty = nil, nil
		s.Selected = base.Bold(true)
		s.Help = help.Styles{}
		s.Input.Cursor.Color = nil
	} else {
		s.Help = help.DefaultDarkStyles()
	}
	return s
}

// Stage names a restore stage for the progress screen.
func (s Styles) Stage(stage string) string {
	if stage == "" {
		return s.Muted.Render("starting…")
	}
	return s.Accent.Render("stage: " + stage)
}
