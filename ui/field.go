package ui

import (
	"charm.land/bubbles/v2/textinput"
)

// newField is a one-line text field: bubbles' textinput with the console's styles and a
// steady cursor (a blinking one redraws the screen twice a second over a slow SSH link);
// secret fields show a mask, never what is typed.
func newField(s *session, prompt string, secret bool) textinput.Model {
	f := textinput.New()
	f.Prompt = prompt
	if secret {
		f.EchoMode, f.EchoCharacter = textinput.EchoPassword, '•'
	}
	f.SetStyles(s.st.Input)
	f.SetWidth(max(s.width-len([]rune(prompt))-2, 10))
	f.Focus()
	return f
}
