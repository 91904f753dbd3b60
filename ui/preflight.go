package ui

import (
	"errors"
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"

	"drconsole/incident"
	"drconsole/recovery"
	"drconsole/storage"
)

// preflightScreen proves the restore can work before anything changes (key, archive,
// tools, server, roles), says what will happen, and asks for the database's name typed
// out as the confirmation. A missing or wrong passphrase is asked for here, without echo.
type preflightScreen struct {
	s       *session
	step    int
	src     recovery.Source
	decrypt recovery.Keys
	state   preflightState
	plan    *recovery.Plan
	err     error
	field   textinput.Model
	attempt int
	fromDB  string // the backup's database, confirmed by the operator when it is not the target
	started bool   // the plan went to the restore, which owns it now
	// ownDump: the dump drconsole just made of a recovery to a point in time; it carries
	// no signature, and none is asked of it.
	ownDump bool
	scroll  int  // first line shown of the warnings and checks, which may not all fit
	noOwner bool // the operator chose to restore without ownership, here or with --no-owner
	// confirmed: the operator already typed the database's name for this restore (a
	// point-in-time recovery's dump): a plan that passes starts the restore at once.
	confirmed bool
}

var keyNoOwner = key.NewBinding(key.WithKeys("o"), key.WithHelp("o", "restore without ownership"))

type preflightState int

const (
	preflightChecking preflightState = iota
	preflightPassphrase
	preflightConfirm
	preflightFailed
	preflightWrongDB // the backup is of another database: type its name to restore it anyway
)

type planPreparedMsg struct {
	attempt int
	plan    *recovery.Plan
	err     error
}

var keyRetry = key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "check again"))

func newPreflightScreen(s *session, step int, loc storage.Location, b storage.Backup) *preflightScreen {
	return &preflightScreen{s: s, step: step, src: recovery.Source{Location: loc, Backup: b}, decrypt: s.opt.Keys, noOwner: s.opt.Load.NoOwner}
}

func (p *preflightScreen) init() tea.Cmd { return p.prepare() }

func (p *preflightScreen) prepare() tea.Cmd {
	s := p.s
	p.release()
	p.state, p.err, p.plan = preflightChecking, nil, nil
	p.attempt++
	if s.opt.Conn == nil {
		err := s.opt.ConnErr
		if err == nil {
			err = errors.New("no connection settings")
		}
		p.state, p.err = preflightFailed, err
		return nil
	}
	if p.src.Location == nil {
		p.state, p.err = preflightFailed, fmt.Errorf("location %q is not configured", p.src.Backup.Location)
		return nil
	}
	// Copies: the engine may keep a passphrase it was given in its Keys.
	keys := recovery.Keys{Entities: p.decrypt.Entities, Passphrase: p.decrypt.Passphrase, Signers: p.decrypt.Signers}
	opts := s.opt.Load
	opts.Conn, opts.Keys, opts.NoOwner, opts.FromDB = s.opt.Conn, &keys, p.noOwner, p.fromDB
	opts.AllowUnsigned = opts.AllowUnsigned || p.ownDump
	opts.Checks, opts.Now, opts.Interval = incident.Checks(s.opt.Runbook), s.opt.Now, s.opt.Progress
	ctx, src, attempt := s.opt.Context, p.src, p.attempt
	return func() tea.Msg {
		plan, err := recovery.Prepare(ctx, src, opts)
		return planPreparedMsg{attempt, plan, err}
	}
}

func (p *preflightScreen) update(msg tea.Msg) (screen, tea.Cmd) {
	s := p.s
	switch msg := msg.(type) {
	case planPreparedMsg:
		if msg.attempt != p.attempt {
			msg.plan.Release() // an answer nobody waits for any more: free the target
			return p, nil
		}
		var wrong *recovery.WrongDatabaseError
		switch {
		case errors.As(msg.err, &wrong) && wrong.FromDB == "":
			p.state, p.err = preflightWrongDB, msg.err
			p.field = newField(s, "type "+wrong.Archive+" to restore it anyway: ", false)
			p.fromDB = wrong.Archive
			return p, p.field.Focus()
		case msg.err == nil && p.confirmed:
			p.state, p.plan, p.started = preflightConfirm, msg.plan, true
			p.field = newField(s, "type "+msg.plan.Target+" to start: ", false)
			return p, push(newProgressScreen(s, p.step, p.plan))
		case msg.err == nil:
			p.state, p.plan = preflightConfirm, msg.plan
			p.field = newField(s, "type "+msg.plan.Target+" to start: ", false)
			return p, p.field.Focus()
		case errors.Is(msg.err, recovery.ErrNeedPassphrase) || errors.Is(msg.err, recovery.ErrWrongKey) && !errors.Is(msg.err, recovery.ErrNotRecipient) && p.decrypt.Passphrase != nil:
			// A passphrase is missing, or the one typed was wrong: ask (again). A key that is
			// not the backup's recipient is not helped by any passphrase.
			p.state, p.err = preflightPassphrase, msg.err
			p.field = newField(s, "passphrase: ", true)
			return p, p.field.Focus()
		default:
			p.state, p.err = preflightFailed, msg.err
		}
	case tea.KeyPressMsg:
		k := msg.String()
		switch p.state {
		case preflightPassphrase, preflightConfirm, preflightWrongDB:
			switch k {
			case "down", "pgdown": // arrows never type: they scroll what pre-flight found
				p.scroll++
				return p, nil
			case "up", "pgup":
				p.scroll = max(p.scroll-1, 0)
				return p, nil
			case "esc":
				p.release()
				return p, pop
			case "enter":
				v := p.field.Value()
				if p.state == preflightWrongDB {
					if strings.TrimSpace(v) != p.fromDB {
						return p, status(fmt.Sprintf("That is not %q: type the backup's database name exactly to restore it anyway, or esc.", p.fromDB))
					}
					return p, p.prepare() // again, with the backup's database named
				}
				if p.state == preflightPassphrase {
					if v == "" {
						return p, nil
					}
					p.decrypt.Passphrase = []byte(v)
					if s.journal != nil {
						s.journal.AddSecret(v)
					}
					return p, p.prepare()
				}
				if strings.TrimSpace(v) != p.plan.Target {
					return p, status(fmt.Sprintf("That is not %q: type the database name exactly to start.", p.plan.Target))
				}
				p.started = true // the restore owns the plan and its lock from here
				return p, push(newProgressScreen(s, p.step, p.plan))
			}
			var cmd tea.Cmd
			p.field, cmd = p.field.Update(msg)
			return p, cmd
		case preflightFailed:
			if key.Matches(msg, keyRetry) {
				return p, p.prepare()
			}
			if key.Matches(msg, keyNoOwner) && errors.Is(p.err, recovery.ErrOwners) && !p.noOwner {
				p.noOwner = true
				return p, p.prepare()
			}
			if key.Matches(msg, keyBack) {
				p.release()
			}
		}
	}
	return p, nil
}

// release frees the target's lock held by a plan that will not be restored.
func (p *preflightScreen) release() {
	if p.plan != nil && !p.started {
		p.plan.Release()
	}
}

// advice is what to do about a failure, in the operator's words.
func advice(err error) string {
	switch {
	case errors.Is(err, recovery.ErrWrongKey):
		return "The key or passphrase does not open this backup. Check --gpg-key, or choose another backup."
	case errors.Is(err, recovery.ErrUnsigned):
		return "None of the trusted signers (--signer-key) signed this backup: choose another, or start drconsole with --allow-unsigned if you know where it came from."
	case errors.Is(err, recovery.ErrBadSignature):
		return "The backup's signature does not verify: it is not what was signed. Choose another backup; nothing was swapped."
	case errors.Is(err, recovery.ErrNoKey):
		return "The backup is encrypted to a key drconsole was not given: start it with --gpg-key FILE (the key named above, from gpg --export-secret-keys)."
	case errors.Is(err, recovery.ErrCorrupt), errors.Is(err, recovery.ErrTruncated), errors.Is(err, recovery.ErrNotBackup):
		return "This copy is damaged: choose another backup, or the same one from another location."
	case errors.Is(err, recovery.ErrNoDatabase):
		return "The server answers, but has no database of that name: check the name (DB_NAME, --db-url or PGDATABASE)."
	case errors.Is(err, recovery.ErrDatabase):
		return "The database server could not be reached or refused: check --db-url / DB_HOST, the credentials, and that PostgreSQL is up."
	case errors.Is(err, recovery.ErrOwners):
		return "Nothing was changed. Create the roles and check again (r), or restore without ownership (o): every object then belongs to the role drconsole connects as."
	case errors.Is(err, recovery.ErrPreflight):
		return "Nothing was changed. Fix what is named above and check again (r)."
	case errors.Is(err, recovery.ErrChecksFailed):
		return "The restored copy failed its checks; it was dropped and the live database is untouched."
	case errors.Is(err, recovery.ErrCancelled):
		return "Cancelled: the scratch database was dropped and the live database is untouched."
	}
	return "Nothing was swapped: the live database is untouched."
}

func (p *preflightScreen) view(w, h int) string {
	s := p.s
	var b strings.Builder
	b.WriteString(s.st.Header.Render("Pre-flight: "+storage.Printable(p.src.Backup.Name)) + "\n")
	b.WriteString(s.st.Muted.Render(fmt.Sprintf("from %s · %s", p.src.Backup.Location, bytesText(p.src.Backup.Size))) + "\n\n")
	switch p.state {
	case preflightChecking:
		b.WriteString(s.st.Muted.Render("Reading the backup header, checking tools, server and roles… nothing is changed yet.") + "\n")
	case preflightFailed:
		b.WriteString(s.st.Danger.Render(wrap("✗ "+p.err.Error(), w)) + "\n\n")
		b.WriteString(wrap(advice(p.err), w) + "\n")
	case preflightWrongDB:
		b.WriteString(s.st.Danger.Render(wrap("✗ "+p.err.Error(), w)) + "\n\n")
		b.WriteString(wrap("Restoring another database's backup under the live name replaces production with other data. Choose another backup (esc), or, if this is really meant, type the backup's database name:", w) + "\n")
		b.WriteString(p.field.View() + "\n")
	case preflightPassphrase:
		b.WriteString(s.st.Warning.Render(wrap(p.err.Error(), w)) + "\n\n")
		b.WriteString("Enter the passphrase for this backup (not shown, never journaled):\n")
		b.WriteString(p.field.View() + "\n")
	case preflightConfirm:
		pl := p.plan
		kv := func(k, v string) {
			b.WriteString(s.st.Muted.Render(fmt.Sprintf("  %-9s", k)) + ansiCut(v, w-11) + "\n")
		}
		kv("target", fmt.Sprintf("%s on %s", pl.Target, pl.Server))
		kv("scratch", pl.Scratch)
		if pl.Kept != "" {
			kv("kept as", pl.Kept)
		}
		if s.drill && s.opt.Sandbox {
			b.WriteString(s.st.Drill.Render(" DRILL ") + " " + wrap("in the sandbox: "+modeSentence(pl), w-8) + "\n")
		} else if s.drill {
			b.WriteString(s.st.Drill.Render(" DRILL ") + " " + wrap("restore and checks run for real in the scratch database, which is then dropped; nothing is swapped.", w-8) + "\n")
		} else {
			b.WriteString(wrap(modeSentence(pl), w) + "\n")
		}
		b.WriteString("\n" + s.st.Bold.Render(wrap("Nothing has changed yet. Type the database name to start the restore.", w)) + "\n")
		b.WriteString(p.field.View() + "\n\n")
		// Every line whole, wrapped; what does not fit scrolls (↑/↓), never cut off.
		var lines []string
		item := func(mark string, text string, style func(...string) string) {
			for i, l := range strings.Split(indent(text, w, 4), "\n") {
				if i == 0 {
					l = "  " + mark + " " + strings.TrimPrefix(l, "    ")
				}
				lines = append(lines, style(l))
			}
		}
		for _, wn := range pl.Warnings {
			item("!", wn, s.st.Warning.Render)
		}
		for _, ok := range pl.Passed {
			item("✓", ok, s.st.Muted.Render)
		}
		room := max(h-strings.Count(b.String(), "\n")-1, 1)
		p.scroll = min(p.scroll, max(len(lines)-room, 0))
		end := min(p.scroll+room, len(lines))
		for _, l := range lines[p.scroll:end] {
			b.WriteString(l + "\n")
		}
		if end < len(lines) || p.scroll > 0 {
			b.WriteString(s.st.Muted.Render(fmt.Sprintf("  ↑/↓ %d more lines", len(lines)-(end-p.scroll))) + "\n")
		}
	}
	return b.String()
}

func (p *preflightScreen) title() string { return "pre-flight" }
func (p *preflightScreen) keys() []key.Binding {
	switch p.state {
	case preflightConfirm:
		return []key.Binding{key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "start restore")), key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back"))}
	case preflightPassphrase:
		return []key.Binding{key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "try passphrase")), key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back"))}
	case preflightWrongDB:
		return []key.Binding{key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "restore it anyway")), key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back"))}
	case preflightFailed:
		if errors.Is(p.err, recovery.ErrOwners) && !p.noOwner {
			return []key.Binding{keyNoOwner, keyRetry, keyBack}
		}
		return []key.Binding{keyRetry, keyBack}
	}
	return []key.Binding{keyBack}
}
func (p *preflightScreen) typing() bool {
	return p.state == preflightPassphrase || p.state == preflightConfirm || p.state == preflightWrongDB
}
func (p *preflightScreen) busy() bool { return false }

// modeSentence says what the restore will do, briefly.
func modeSentence(pl *recovery.Plan) string {
	switch pl.Mode {
	case recovery.ModeSwap:
		return "Restore into the scratch database and check it there; you then choose to swap it in (the live one is kept) or abandon it."
	case recovery.ModeCreate:
		return "The target does not exist: restore into the scratch database, check it, then rename it to the target."
	}
	return "Restore into a new database and check it; nothing is swapped."
}
