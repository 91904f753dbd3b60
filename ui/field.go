package ui

import (
	"strings"
	"unicode"

	tea "charm.land/bubbletea/v2"
)

// field is a one-line text field. (bubbles/textinput would pull in a clipboard module
// that go.sum does not pin; a field this small does not need it.)
type field struct {
	Prompt string
	secret bool
	value  []rune
	width  int
}

func newField(s *session, prompt string, secret bool) field {
	return field{Prompt: prompt, secret: secret, width: max(s.width-len(prompt)-2, 10)}
}

func (f *field) Focus() tea.Cmd    { return nil }
func (f *field) SetValue(v string) { f.value = []rune(v) }
func (f field) Value() string      { return string(f.value) }

func (f field) Update(msg tea.Msg) (field, tea.Cmd) {
	k, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return f, nil
	}
	switch k.String() {
	case "backspace", "ctrl+h":
		if len(f.value) > 0 {
			f.value = f.value[:len(f.value)-1]
		}
	case "ctrl+u":
		f.value = nil
	case "ctrl+w":
		v := strings.TrimRightFunc(string(f.value), unicode.IsSpace)
		i := strings.LastIndexFunc(v, unicode.IsSpace)
		f.value = []rune(v[:i+1])
	default:
		if k.Text != "" {
			for _, r := range k.Text {
				if unicode.IsPrint(r) {
					f.value = append(f.value, r)
				}
			}
		}
	}
	return f, nil
}

func (f field) View() string {
	v := string(f.value)
	if f.secret {
		v = strings.Repeat("•", len(f.value))
	}
	if r := []rune(v); len(r) > f.width {
		v = "…" + string(r[len(r)-f.width+1:])
	}
	return f.Prompt + v + "█"
}
