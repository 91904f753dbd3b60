package drill

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"drconsole/checklists"
	"drconsole/drill/inject"
	"drconsole/storage"
)

// Modes of a drill, as a scorecard names them.
const (
	ModeConsole  = "console"  // a trainee in the console, on a sandbox
	ModeAuto     = "auto"     // drill --auto: the right recovery, headless
	ModeTabletop = "tabletop" // no sandbox: every step manual
)

// Scorecard is a drill's result: the times against the runbook's budgets, the backup
// chosen, the data against what the sandbox knows is right, and the mistakes.
type Scorecard struct {
	Scenario      string       `json:"scenario"`
	ScenarioName  string       `json:"scenario_name"`
	Mode          string       `json:"mode"`
	Size          string       `json:"size,omitempty"`
	Seed          uint64       `json:"seed,omitempty"`
	Incident      string       `json:"incident,omitempty"`
	Operator      string       `json:"operator,omitempty"`
	Started       time.Time    `json:"started"`
	Ended         time.Time    `json:"ended"`
	Outcome       string       `json:"outcome,omitempty"` // how the drill was closed; "" if it was not
	Steps         []StepScore  `json:"steps,omitempty"`
	Recovered     bool         `json:"recovered"`          // a restore was swapped in
	RTOSeconds    float64      `json:"rto_seconds"`        // incident start to the swap's end (or to the end when nothing was swapped)
	RTOTarget     float64      `json:"rto_target_seconds"` // the scenario's RTO
	RTOMet        bool         `json:"rto_met"`            //
	RPOSeconds    *float64     `json:"rpo_seconds"`        // the data lost: the fault's moment (else the incident's start) minus the recovery point
	RPOTarget     float64      `json:"rpo_target_seconds"` //
	RPOMet        bool         `json:"rpo_met"`            // within the target, and no data lost that a better choice keeps
	RPOFrom       string       `json:"rpo_from,omitempty"` // what RPOSeconds is measured from and to, in words
	Backup        string       `json:"backup,omitempty"`   // the backup swapped in
	BackupVerdict string       `json:"backup_verdict,omitempty"`
	Tables        []TableScore `json:"tables,omitempty"`
	DataChecked   bool         `json:"data_checked"` // false in a tabletop: there is no data
	DataRight     bool         `json:"data_right"`
	DataAgainst   string       `json:"data_against,omitempty"`
	Mistakes      []string     `json:"mistakes"`
	Pass          bool         `json:"pass"`
	Fault         string       `json:"fault,omitempty"`
	Answer        string       `json:"answer,omitempty"`
	// PointInTime is the target, when the data came back by a recovery to a point in time.
	PointInTime   string        `json:"point_in_time,omitempty"`
	rto, rpoGoal  time.Duration // as durations, for the text
	recoveryPoint time.Time
	against       string
	// avoidable: a mistake names data lost that the sandbox held (an older backup, a
	// point in time earlier than needed): the RPO is not met, whatever its figure.
	avoidable bool
}

// StepScore is one step's time against its budget.
type StepScore struct {
	Number  int     `json:"number"`
	Title   string  `json:"title"`
	Status  string  `json:"status"`
	Seconds float64 `json:"seconds"`
	Budget  float64 `json:"budget_seconds,omitempty"`
	Over    bool    `json:"over_budget"`
}

// TableScore is one table of the recovered database against the clean backup's.
type TableScore struct {
	Name  string `json:"name"`
	Rows  string `json:"rows"`
	Right bool   `json:"right"`
}

// ScoreInput is what a drill is scored from.
type ScoreInput struct {
	Mode     string
	Size     string
	Seed     uint64
	Incident *checklists.Incident // the drill's incident; nil: none was started
	Runbook  *checklists.Runbook
	Scenario *checklists.Scenario
	// Sandbox knows the right answer; nil in a tabletop.
	Sandbox *Sandbox
	// Prints are the sandbox database's fingerprints now (PrintsErr: why they could not be read).
	Prints    map[string]string
	PrintsErr error
	// Reachable are the escalation roles a channel reaches in the drill: an escalation
	// is a mistake to miss only when the console could offer it.
	Reachable []string
	Now       time.Time
}

// Score scores a drill. One scorer for the console's drills, --auto and tabletops.
func Score(in ScoreInput) *Scorecard {
	sc := in.Scenario
	c := &Scorecard{Scenario: sc.ID, ScenarioName: sc.Name, Mode: in.Mode, Size: in.Size, Seed: in.Seed,
		RTOTarget: sc.RTO.Seconds(), RPOTarget: sc.RPO.Seconds(), rto: sc.RTO, rpoGoal: sc.RPO, Mistakes: []string{}}
	if in.Sandbox != nil {
		c.Fault, c.Answer = in.Sandbox.Fault, in.Sandbox.Answer()
	}
	inc := in.Incident
	if inc == nil {
		c.Started, c.Ended = in.Now, in.Now
		c.Mistakes = append(c.Mistakes, "no drill was started")
		c.scoreData(in, "")
		return c
	}
	c.Incident, c.Operator, c.Started, c.Outcome = inc.ID, inc.Operator, inc.Started, inc.Outcome
	end := in.Now
	if inc.Closed && !inc.Ended.IsZero() {
		end = inc.Ended
	}
	c.Ended = end

	// The recovery: the last restore swapped in, and when the data was back.
	var swapped *checklists.RestoreRecord
	for i := range inc.Restores {
		r := &inc.Restores[i]
		if r.Swap != nil && r.Swap.Result == checklists.ResultOK {
			swapped = r
		}
	}
	recoveredAt := end
	if swapped != nil {
		c.Recovered, c.Backup = true, swapped.Backup
		if !swapped.Swap.Ended.IsZero() {
			recoveredAt = swapped.Swap.Ended
		}
	}
	took := recoveredAt.Sub(inc.Started)
	c.RTOSeconds = took.Seconds()
	c.RTOMet = c.Recovered && took <= sc.RTO
	if in.Mode == ModeTabletop {
		c.RTOMet = took <= sc.RTO // nothing is restored in a tabletop: the time is the team's
	}
	// The data lost runs from the recovery point to the last good moment: in a sandbox the
	// moment just before its fault, which it knows; else the incident's start.
	lastGood, to := inc.Started, "the incident's start"
	if in.Sandbox != nil && !in.Sandbox.FaultAt.IsZero() {
		lastGood, to = in.Sandbox.FaultAt, "the fault"
	}
	if t, ok := backupTime(c.Backup); ok {
		rpo := max(lastGood.Sub(t), 0).Seconds()
		c.RPOSeconds, c.RPOFrom = &rpo, "the backup's time to "+to
	}
	// A recovery to a point in time: the swapped copy came from it.
	if p := inc.PITR; swapped != nil && p != nil && p.Result == checklists.ResultOK && !swapped.Started.Before(p.Time) {
		c.PointInTime = p.Target()
		c.Backup = "point in time: " + p.Target() + ", from base backup " + p.BaseBackup
		c.RPOSeconds, c.RPOFrom = nil, ""
		if p.RecoveryPoint != nil {
			rpo := max(lastGood.Sub(*p.RecoveryPoint), 0).Seconds()
			c.RPOSeconds, c.RPOFrom = &rpo, "the recovery point to "+to
			c.recoveryPoint = *p.RecoveryPoint
		}
	}

	if in.Mode != ModeAuto {
		if !inc.Closed {
			c.Mistakes = append(c.Mistakes, "the drill was left open: it was never closed with an outcome")
		}
		c.scoreSteps(in, inc, end)
	}
	if in.Mode != ModeTabletop {
		c.scoreBackup(in)
		if !c.Recovered {
			c.Mistakes = append(c.Mistakes, "the database was never recovered: no restore was swapped in")
		}
	}
	c.scoreData(in, c.Backup)
	if c.RPOSeconds != nil {
		c.RPOMet = secs(*c.RPOSeconds) <= sc.RPO && !c.avoidable
	}
	c.Pass = len(c.Mistakes) == 0 && c.RTOMet && (c.DataRight || !c.DataChecked)
	return c
}

// TimeToRecovery is how long the drill took to bring the data back, and false when it
// never did: nothing was swapped in (a drill left open or abandoned before its swap), or
// a tabletop was not closed as complete. Such a drill has no time to recovery to trend.
func (c *Scorecard) TimeToRecovery() (time.Duration, bool) {
	if c.Mode == ModeTabletop {
		return secs(c.RTOSeconds), c.Outcome != "" && !strings.Contains(c.Outcome, "abandon")
	}
	return secs(c.RTOSeconds), c.Recovered
}

func (c *Scorecard) scoreSteps(in ScoreInput, inc *checklists.Incident, end time.Time) {
	var path []checklists.Escalation
	if in.Runbook != nil {
		path = in.Runbook.Escalation
	}
	clk := checklists.ClockAt(inc, path, end)
	for i, st := range clk.Steps {
		c.Steps = append(c.Steps, StepScore{Number: st.Number, Title: st.Title, Status: string(st.Status),
			Seconds: st.Elapsed.Seconds(), Budget: st.Budget.Seconds(), Over: st.Over})
		rec := inc.Steps[i]
		if rec.Status == checklists.StepSkipped && rec.Kind == checklists.KindChecks {
			why := ""
			if rec.Note != "" {
				why = " (" + rec.Note + ")"
			}
			c.Mistakes = append(c.Mistakes, fmt.Sprintf("skipped step %d, %s%s: the checks were not run", rec.Number, rec.Title, why))
		}
	}
	if in.Runbook != nil {
		var open []string
		for _, it := range in.Runbook.PostRecovery {
			if _, ok := inc.Ticked(it); !ok {
				open = append(open, it)
			}
		}
		if len(open) > 0 {
			list := open
			if len(list) > 3 {
				list = append(slices.Clone(list[:3]), "…")
			}
			c.Mistakes = append(c.Mistakes, fmt.Sprintf("%d of %d post-recovery checklist items left unticked: %s", len(open), len(in.Runbook.PostRecovery), strings.Join(list, "; ")))
		}
	}
	// The facilitator's injects: each one acknowledged, and an escalation it made due
	// answered (paged or declined, at its level or a later one).
	for _, ij := range inc.Injects {
		if ij.Acked.IsZero() {
			c.Mistakes = append(c.Mistakes, fmt.Sprintf("the inject %q was never acknowledged", ij.Event))
		}
		if ij.Apply != inject.Escalate || ij.Level < 1 {
			continue
		}
		answered := false
		for l := ij.Level; l <= max(len(path), ij.Level); l++ {
			answered = answered || inc.Acknowledged(l)
		}
		if !answered {
			role := fmt.Sprintf("level %d", ij.Level)
			if ij.Level <= len(path) {
				role = path[ij.Level-1].Role
			}
			c.Mistakes = append(c.Mistakes, fmt.Sprintf("the inject %q made the escalation to %s due, and it was never paged or declined", ij.Event, role))
		}
	}
	// Escalation: a level reached during the drill that a channel could page, never
	// answered (nor a later level).
	for lvl := clk.Level; lvl >= 2; lvl-- {
		role := path[lvl-1].Role
		if !slices.ContainsFunc(in.Reachable, func(r string) bool { return strings.EqualFold(r, role) }) {
			continue
		}
		answered := false
		for l := lvl; l <= len(path); l++ {
			answered = answered || inc.Acknowledged(l)
		}
		if !answered {
			c.Mistakes = append(c.Mistakes, fmt.Sprintf("the escalation to %s was due at %s and never paged or declined", role, checklists.FormatDuration(path[lvl-1].From)))
		}
		break
	}
}

func (c *Scorecard) scoreBackup(in ScoreInput) {
	sb := in.Sandbox
	if sb == nil || c.Backup == "" {
		return
	}
	if c.PointInTime != "" {
		switch {
		case c.recoveryPoint.IsZero():
			c.BackupVerdict = "recovered, to a point the server did not say"
		case c.recoveryPoint.After(sb.FaultAt):
			c.BackupVerdict = "AFTER the fault began: it holds the damage"
			c.Mistakes = append(c.Mistakes, "recovered to a point in time after the fault began")
		default:
			c.BackupVerdict = "before the fault began"
		}
		return
	}
	switch {
	case c.Backup == sb.Clean:
		c.BackupVerdict = "the right one"
	case slices.Contains(sb.Infected, c.Backup):
		c.BackupVerdict = "INFECTED: taken after the attack began"
		c.Mistakes = append(c.Mistakes, "restored an infected backup ("+c.Backup+"); the clean one is "+sb.Clean)
	default:
		c.BackupVerdict = "not the newest clean one (" + sb.Clean + ")"
		c.Mistakes = append(c.Mistakes, "restored "+c.Backup+", older than the clean one "+sb.Clean+": data lost")
		c.avoidable = true
	}
}

func (c *Scorecard) scoreData(in ScoreInput, _ string) {
	if in.Sandbox == nil {
		return
	}
	c.DataChecked, c.DataRight = true, in.PrintsErr == nil
	// Restored from a dump: the clean backup's data; to a point in time: the data just
	// before the fault.
	truth, whose := in.Sandbox.Prints, "the clean backup's"
	if c.PointInTime != "" {
		truth, whose = in.Sandbox.BeforeFault, "the data just before the fault"
	}
	c.against, c.DataAgainst = whose, whose
	for _, t := range Tables {
		name := "public." + t
		got, want := in.Prints[name], truth[name]
		ok := got == want && got != ""
		c.DataRight = c.DataRight && ok
		rows, _, _ := strings.Cut(got, " ")
		c.Tables = append(c.Tables, TableScore{Name: name, Rows: rows, Right: ok})
	}
	if in.PrintsErr != nil {
		c.Mistakes = append(c.Mistakes, "the sandbox's database cannot be read: "+in.PrintsErr.Error())
	} else if !c.DataRight && c.PointInTime != "" && !c.recoveryPoint.IsZero() && c.recoveryPoint.Before(in.Sandbox.FaultAt) {
		c.Mistakes = append(c.Mistakes, "recovered to a point earlier than needed: the writes between it and the fault ("+stampUTC(in.Sandbox.PITRTarget())+") are lost")
		c.avoidable = true
	} else if !c.DataRight {
		c.Mistakes = append(c.Mistakes, "the recovered data is not "+whose)
	}
}

// Text is the scored report as the terminal shows it.
func (c *Scorecard) Text() string {
	var b strings.Builder
	kv := func(k, f string, a ...any) { fmt.Fprintf(&b, "%-9s %s\n", k, fmt.Sprintf(f, a...)) }
	what := c.Mode
	if c.Size != "" {
		what += ", " + c.Size
	}
	if c.Seed != 0 {
		what += fmt.Sprintf(", seed %d", c.Seed)
	}
	kv("drill", "%s (%s)", c.ScenarioName, what)
	if c.Fault != "" {
		kv("fault", "%s", c.Fault)
	}
	switch {
	case c.Outcome != "":
		kv("closed", "as %s, after %s", c.Outcome, clock(c.Ended.Sub(c.Started)))
	case c.Mode != ModeAuto && c.Incident != "":
		kv("closed", "no: left open after %s", clock(c.Ended.Sub(c.Started)))
	}
	for _, s := range c.Steps {
		budget, mark := "untimed", ""
		if s.Budget > 0 {
			budget = "of " + checklists.FormatDuration(secs(s.Budget))
		}
		if s.Over {
			mark = "  OVER"
		}
		kv("step", "%2d %-8s %6s %-10s %s%s", s.Number, s.Status, clock(secs(s.Seconds)), budget, s.Title, mark)
	}
	if c.Backup != "" {
		v := ""
		if c.BackupVerdict != "" {
			v = ": " + c.BackupVerdict
		}
		kv("backup", "%s%s", c.Backup, v)
	}
	rto := "to the end (nothing was swapped in)"
	if c.Recovered {
		rto = "to the swap"
	}
	if c.Mode == ModeTabletop {
		rto = "to the close"
	}
	kv("RTO", "%s %s, of %s: %s", clock(secs(c.RTOSeconds)), rto, checklists.FormatDuration(c.rto), metWord(c.RTOMet))
	if c.RPOSeconds != nil {
		rpo := secs(*c.RPOSeconds)
		verdict := metWord(c.RPOMet)
		switch {
		case !c.RPOMet && rpo <= c.rpoGoal: // within the figure, but a mistake lost data the sandbox held
			verdict = "NOT MET: an avoidable loss (the mistake below)"
		case rpo > c.rpoGoal && c.BackupVerdict == "the right one":
			verdict += " (the schedule's: no clean backup was newer)"
		}
		lost := checklists.FormatDuration(rpo.Round(time.Minute))
		switch {
		case rpo < time.Minute: // a point in time a moment too early loses a second's writes
			lost = fmt.Sprintf("%.1fs", rpo.Seconds())
		case rpo < time.Hour:
			lost = clock(rpo)
		}
		from := c.RPOFrom
		if from == "" { // a scorecard kept before it was said
			from = "the backup's time to the incident's start"
			if c.PointInTime != "" {
				from = "the recovery point to the incident's start"
			}
		}
		kv("RPO", "%s of data lost (%s), target %s: %s", lost, from, checklists.FormatDuration(c.rpoGoal), verdict)
	}
	if c.DataChecked {
		b.WriteString("data      each table against " + c.against + ":\n")
		for _, t := range c.Tables {
			v := "right"
			if !t.Right {
				v = "WRONG"
			}
			fmt.Fprintf(&b, "  %-6s  %-15s %s rows\n", v, t.Name, t.Rows)
		}
	}
	for _, m := range c.Mistakes {
		kv("mistake", "%s", m)
	}
	switch {
	case c.Pass && c.DataChecked:
		kv("score", "PASS: the data is right and the RTO met")
	case c.Pass:
		kv("score", "PASS: every step within the RTO, no mistakes")
	default:
		kv("score", "FAIL")
	}
	return b.String()
}

// Closed reports whether the drill's incident was closed (the console scores it then).
func (c *Scorecard) Closed() bool { return c.Outcome != "" }

// Why is the failure in one line, for an exit error; "" when the drill passed.
func (c *Scorecard) Why() string {
	if c.Pass {
		return ""
	}
	why := slices.Clone(c.Mistakes)
	if !c.RTOMet {
		why = append(why, "the RTO was missed")
	}
	return strings.Join(why, "; ")
}

func metWord(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func stampUTC(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// clock is a duration as h:mm:ss or m:ss.
func clock(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}

// backupTime is when a backup was taken, from its name.
func backupTime(name string) (time.Time, bool) {
	if name == "" {
		return time.Time{}, false
	}
	b := storage.ParseName(name)
	return b.Time, !b.Time.IsZero()
}

// Answer is what a correct recovery brings back, for the facilitator.
func (s *Sandbox) Answer() string {
	names := make([]string, 0, len(s.Truth))
	for t := range s.Truth {
		names = append(names, t)
	}
	sort.Strings(names)
	var truth []string
	for _, t := range names {
		truth = append(truth, fmt.Sprintf("%s %d", t, s.Truth[t]))
	}
	out := "restore " + s.Clean + ": the clean backup's rows: " + strings.Join(truth, ", ")
	if !s.FaultAt.IsZero() {
		out += "; or recover to a point in time just before the fault began, " + stampUTC(s.PITRTarget()) + " (restore --to-time)"
	}
	return out
}

// PITRTarget is the whole second a recovery to a point in time aims at to undo the fault:
// after the last commit before it, and before the fault's first commit (over a second
// later).
func (s *Sandbox) PITRTarget() time.Time { return s.FaultAt.Truncate(time.Second).Add(time.Second) }

// RecordDir is where drills' scorecards are kept, under this machine's drconsole state
// directory: the one thing a drill writes outside its sandbox, for report --drills.
func RecordDir(stateDir string) string { return filepath.Join(stateDir, "drills") }

// Save writes the scorecard into dir as JSON, named by its start and scenario, and
// beside it (.md) the scored report followed by report, the incident's report, if any:
// a sandbox and its journal go when the drill ends, these stay.
func (c *Scorecard) Save(dir, report string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("%s-%s-%s.json", c.Started.UTC().Format("20060102T150405.000000000Z"), c.Scenario, c.Mode)
	path := filepath.Join(dir, name)
	md := "# Drill: " + c.ScenarioName + "\n\n```\n" + c.Text() + "```\n"
	if report != "" {
		md += "\n" + report
	}
	for _, f := range []struct{ path, data string }{{ReportPath(path), md}, {path, string(data) + "\n"}} {
		tmp := f.path + ".tmp"
		if err := os.WriteFile(tmp, []byte(f.data), 0o600); err != nil {
			return "", err
		}
		if err := os.Rename(tmp, f.path); err != nil {
			return "", err
		}
	}
	return path, nil
}

// ReportPath is where Save keeps the Markdown report beside the scorecard at path.
func ReportPath(path string) string { return strings.TrimSuffix(path, ".json") + ".md" }

// LoadScorecards reads the scorecards in dir, oldest first; files that cannot be read
// are named in errs.
func LoadScorecards(dir string) (cards []*Scorecard, errs []string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	sort.Strings(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		var c Scorecard
		if err == nil {
			err = json.Unmarshal(data, &c)
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", filepath.Base(f), err))
			continue
		}
		c.rto, c.rpoGoal, c.against = secs(c.RTOTarget), secs(c.RPOTarget), c.DataAgainst
		cards = append(cards, &c)
	}
	sort.SliceStable(cards, func(i, j int) bool { return cards[i].Started.Before(cards[j].Started) })
	return cards, errs
}

// LatestIncident is the incident most recently started in a state directory (a
// sandbox's), read back; nil when there is none.
func LatestIncident(stateDir string) (*checklists.Incident, error) {
	path, err := checklists.LatestPath(stateDir)
	if err != nil || path == "" {
		return nil, err
	}
	inc, _, err := checklists.ReadJournal(path)
	return inc, err
}
