package ui

import "charm.land/bubbles/v2/key"

// Keys every screen shares. A screen's own keys come from its keys method.
var (
	keyUp     = key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "up"))
	keyDown   = key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "down"))
	keyEnter  = key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "open"))
	keyBack   = key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back"))
	keyHelp   = key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "all keys"))
	keyQuit   = key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit"))
	keyFilter = key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter"))
)

// keyQuitTyping is how to quit while a text field has the keys: q and ? are typed.
var keyQuitTyping = key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "quit"))

// keyMap adapts a screen's bindings to bubbles/help. typing: a text field has the keys,
// so the help bar offers only what still works (ctrl+c, not q or ?).
type keyMap struct {
	short, global []key.Binding
	typing        bool
}

func (k keyMap) ShortHelp() []key.Binding {
	if k.typing {
		return append(append([]key.Binding{}, k.short...), keyQuitTyping)
	}
	return append(append([]key.Binding{}, k.short...), keyHelp, keyQuit)
}

func (k keyMap) FullHelp() [][]key.Binding {
	var cols [][]key.Binding
	for i := 0; i < len(k.short); i += 5 {
		cols = append(cols, k.short[i:min(i+5, len(k.short))])
	}
	return append(cols, k.global)
}
