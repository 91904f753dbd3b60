package ui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"drconsole/checklists"
	"drconsole/incident"
)

// startScreen offers to resume an open incident or to start a new one or a drill.
type startScreen struct {
	hidden  int // real incidents open, which a drill console does not offer
	others  int // drills of other scenarios open, which a drill of one scenario does not offer
	s       *session
	loaded  bool
	err     error
	open    []checklists.IncidentSummary
	choices []startChoice
	cur     cursor
	server  *serverCheckedMsg // what the look at the server found; nil until it answers
}

type startChoice struct {
	label  string
	resume string // incident id
	drill  bool
}

type incidentsListedMsg struct {
	list []checklists.IncidentSummary
	err  error
}

func newStartScreen(s *session) *startScreen {
	st := &startScreen{s: s}
	st.build()
	return st
}

func (st *startScreen) init() tea.Cmd {
	dir := st.s.opt.StateDir
	return tea.Batch(func() tea.Msg {
		list, err := checklists.List(dir)
		return incidentsListedMsg{list, err}
	}, checkServer(st.s))
}

func (st *startScreen) build() {
	st.choices = nil
	label := "Start a drill (tabletop or training: nothing is run for real)"
	if st.s.opt.Sandbox {
		label = "Start the drill (in the sandbox: restores, swaps and psql run for real there)"
	}
	// A drill made for one scenario (drconsole drill, drill --tabletop) starts it first:
	// an open one of the same scenario is offered after it, as what it is.
	if sc, ok := st.s.opt.Runbook.Scenario(st.s.opt.Scenario); ok && st.s.opt.Drill {
		if !st.s.opt.Sandbox {
			label = "Start a new drill of " + sc.Name + " (nothing is run for real)"
		}
		st.choices = append(st.choices, startChoice{label: label, drill: true})
		for _, inc := range st.open {
			st.choices = append(st.choices, startChoice{
				label:  fmt.Sprintf("Resume this scenario's open drill instead: started %s ago, %d/%d steps done", checklistsAge(st.s, inc), inc.StepsDone, inc.Steps),
				resume: inc.ID, drill: true,
			})
		}
		st.cur.setLen(len(st.choices))
		return
	}
	for _, inc := range st.open {
		kind := "incident"
		if inc.Drill {
			kind = "drill"
		}
		age := checklistsAge(st.s, inc)
		st.choices = append(st.choices, startChoice{
			label:  fmt.Sprintf("Resume %s: %s (started %s ago, %d/%d steps done)", kind, inc.ScenarioName, age, inc.StepsDone, inc.Steps),
			resume: inc.ID, drill: inc.Drill,
		})
	}
	if !st.s.opt.Drill {
		st.choices = append(st.choices, startChoice{label: "Start a new incident (real recovery)"})
	}
	st.choices = append(st.choices, startChoice{label: label, drill: true})
	st.cur.setLen(len(st.choices))
}

func checklistsAge(s *session, inc checklists.IncidentSummary) string {
	return checklists.FormatDuration(s.now.Sub(inc.Started).Truncate(60e9))
}

func (st *startScreen) update(msg tea.Msg) (screen, tea.Cmd) {
	switch msg := msg.(type) {
	case serverCheckedMsg:
		st.server = &msg
		for _, r := range msg.repaired {
			st.s.note("repaired: " + r)
		}
	case incidentsListedMsg:
		st.loaded, st.err = true, msg.err
		st.open, st.hidden, st.others = nil, 0, 0
		for _, inc := range msg.list {
			switch {
			case inc.Closed || inc.Err != "":
			case st.s.opt.Drill && !inc.Drill:
				st.hidden++ // a drill console never resumes or joins a real incident
			case st.s.opt.Drill && st.s.opt.Scenario != "" && inc.Scenario != st.s.opt.Scenario:
				st.others++ // nor a drill of another scenario than the one asked for
			default:
				st.open = append(st.open, inc)
			}
		}
		st.build()
	case tea.KeyPressMsg:
		if st.cur.move(msg.String()) {
			return st, nil
		}
		if key.Matches(msg, keyLeftovers) && st.server != nil && st.server.err == nil {
			return st, push(newLeftoversScreen(st.s, st.server.leftovers, func(m serverCheckedMsg) {
				m.repaired = nil // said when first seen
				st.server = &m
			}))
		}
		if msg.String() == "enter" && st.cur.n > 0 {
			ch := st.choices[st.cur.i]
			if ch.resume != "" {
				return st, resumeIncident(st.s, ch.resume)
			}
			st.s.drill = ch.drill
			return st, push(newPickerScreen(st.s))
		}
	}
	return st, nil
}

// resumeIncident reopens an incident and finishes, from the server's catalog, the record
// of any restore that a killed or disconnected drconsole left without an outcome.
func resumeIncident(s *session, id string) tea.Cmd {
	stateDir, ctx, conn, who := s.opt.StateDir, s.opt.Context, s.opt.Conn, s.opt.Operator
	return func() tea.Msg {
		j, err := checklists.Resume(stateDir, id)
		if err != nil {
			return incidentOpenedMsg{err: err}
		}
		if err := j.Record(checklists.Event{Type: checklists.EventSession, Note: "resumed in the console"}); err != nil {
			j.Close()
			return incidentOpenedMsg{err: err}
		}
		found, err := incident.New(j, who, false).Reconcile(ctx, conn)
		if err != nil {
			found = append(found, "earlier attempt: "+err.Error())
		}
		return incidentOpenedMsg{journal: j, found: found}
	}
}

func (st *startScreen) view(w, h int) string {
	s := st.s
	var b strings.Builder
	b.WriteString(s.st.Header.Render("What are you here to do?") + "\n\n")
	if !st.loaded {
		b.WriteString(s.st.Muted.Render("Looking for open incidents…") + "\n")
	} else if st.err != nil {
		b.WriteString(s.st.Danger.Render("Could not list incidents: "+st.err.Error()) + "\n")
	} else if len(st.open) == 0 {
		b.WriteString(s.st.Muted.Render("No incident is open.") + "\n")
	} else if s.opt.Drill && s.opt.Scenario != "" {
		b.WriteString(s.st.Warning.Render(wrap(fmt.Sprintf("%d drill(s) of this scenario open: start a new one, or resume it below.", len(st.open)), w)) + "\n")
	} else {
		b.WriteString(s.st.Warning.Render(fmt.Sprintf("%d incident(s) still open: resume rather than start over.", len(st.open))) + "\n")
	}
	used := 0
	// What the console will work on, so nobody restores into the wrong server unawares.
	for _, set := range s.opt.Settings {
		switch set.Name {
		case "server", "database", "locations", "decryption key", "signer keys", "alert":
		default:
			continue
		}
		text := set.Name + ": " + strings.ReplaceAll(set.Value, "\n", ", ")
		line := indent(text, w, 2)
		if set.Problem || set.Name == "alert" {
			line = s.st.Warning.Render(line)
		} else {
			line = s.st.Muted.Render(line)
		}
		b.WriteString(line + "\n")
		used += strings.Count(line, "\n") + 1
	}
	if sv := st.server; sv != nil {
		for _, r := range sv.repaired {
			b.WriteString(s.st.Success.Render(wrap("Repaired: "+r, w)) + "\n")
			used += strings.Count(wrap(r, w), "\n") + 1
		}
		if sv.err != nil {
			b.WriteString(s.st.Danger.Render(wrap("Server: "+sv.err.Error(), w)) + "\n")
			used += strings.Count(wrap(sv.err.Error(), w), "\n") + 1
		} else if line := leftoverSummary(sv.leftovers); line != "" {
			b.WriteString(s.st.Warning.Render(wrap(line, w)) + "\n")
			used += strings.Count(wrap(line, w), "\n") + 1
		}
	}
	b.WriteString("\n")
	for _, l := range s.rows(st.cur, h-6-used, func(i int) string { return st.choices[i].label }) {
		b.WriteString(l + "\n")
	}
	if s.opt.Sandbox {
		b.WriteString("\n" + s.st.Muted.Render(wrap("A sandbox drill: the server, locations and key above are the sandbox's; nothing outside it is reachable.", w)) + "\n")
	} else if s.opt.Drill {
		b.WriteString("\n" + s.st.Muted.Render("--drill: only drills can be started or resumed in this session.") + "\n")
		if st.hidden > 0 {
			b.WriteString(s.st.Warning.Render(wrap(fmt.Sprintf("%d real incident(s) open: not offered in a drill (run drconsole without --drill to resume one).", st.hidden), w)) + "\n")
		}
	}
	if st.others > 0 {
		b.WriteString(s.st.Muted.Render(wrap(fmt.Sprintf("%d open drill(s) of other scenarios: not offered in a drill of this one.", st.others), w)) + "\n")
	}
	return b.String()
}

func (st *startScreen) title() string { return "start" }
func (st *startScreen) keys() []key.Binding {
	ks := []key.Binding{keyMove, key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "choose"))}
	if st.server != nil && st.server.err == nil && len(st.server.leftovers) > 0 {
		ks = append(ks, keyLeftovers)
	}
	return ks
}
func (st *startScreen) typing() bool { return false }
func (st *startScreen) busy() bool   { return false }
