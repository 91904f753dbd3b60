// Package checklists is the runbook as data (scenarios, timed steps, contacts, escalation,
// checklists), the incident journal that records what was done, and the report made from it.
package checklists

import (
	_ "embed"
	"fmt"
	"strings"
	"time"
)

// DefaultScenario is the scenario whose recovery is a restore: the one a CLI-only
// restore records into when the operator names none.
const DefaultScenario = "database-corruption"

// Runbook is the whole disaster recovery runbook.
type Runbook struct {
	Title       string `yaml:"title" json:"title"`
	Version     string `yaml:"version" json:"version"`
	LastUpdated string `yaml:"last_updated" json:"last_updated"`
	NextReview  string `yaml:"next_review" json:"next_review"`
	Overview    string `yaml:"overview" json:"overview"`

	Objectives    Objectives    `yaml:"objectives" json:"objectives"`
	Prerequisites Prerequisites `yaml:"prerequisites" json:"prerequisites"`
	Backups       Backups       `yaml:"backups" json:"backups"`
	Scenarios     []Scenario    `yaml:"scenarios" json:"scenarios"`
	PITR          PITR          `yaml:"pitr" json:"pitr"`
	Testing       Testing       `yaml:"testing" json:"testing"`
	Contacts      Contacts      `yaml:"contacts" json:"contacts"`
	Escalation    []Escalation  `yaml:"escalation" json:"escalation"`
	Alerts        Alerts        `yaml:"alerts" json:"alerts"`
	Checks        []CheckDef    `yaml:"checks" json:"checks"`
	PostRecovery  []string      `yaml:"post_recovery_checklist" json:"post_recovery_checklist"`
	Appendix      Appendix      `yaml:"appendix" json:"appendix"`
}

// Objectives are the runbook-wide targets; each scenario has its own RTO and RPO too.
type Objectives struct {
	RTO time.Duration `yaml:"rto" json:"-"`
	RPO time.Duration `yaml:"rpo" json:"-"`
}

// Prerequisites are the access and tools an operator needs before an incident.
type Prerequisites struct {
	Access []string `yaml:"access" json:"access"`
	Tools  []string `yaml:"tools" json:"tools"`
}

// Backups are the backup strategy and where the backups are kept.
type Backups struct {
	Strategy  []BackupPlan     `yaml:"strategy" json:"strategy"`
	Locations []BackupLocation `yaml:"locations" json:"locations"`
}

// BackupPlan is one kind of automated backup.
type BackupPlan struct {
	Name      string   `yaml:"name" json:"name" check:"required"`
	Schedule  string   `yaml:"schedule" json:"schedule"`
	Details   []string `yaml:"details" json:"details"`
	Retention string   `yaml:"retention" json:"retention"`
}

// BackupLocation is a place backups are kept: an s3:// URL or a local directory.
type BackupLocation struct {
	Name      string `yaml:"name" json:"name" check:"required"`
	URL       string `yaml:"url" json:"url" check:"required"`
	Retention string `yaml:"retention,omitempty" json:"retention,omitempty"`
}

// PITR is the point-in-time recovery section.
type PITR struct {
	Description  string   `yaml:"description" json:"description"`
	Command      string   `yaml:"command" json:"command"`
	Requirements []string `yaml:"requirements" json:"requirements"`
}

// Testing holds the periodic testing checklists.
type Testing struct {
	Monthly   []string `yaml:"monthly" json:"monthly"`
	Quarterly []string `yaml:"quarterly" json:"quarterly"`
	Annual    []string `yaml:"annual" json:"annual"`
}

// Contacts are the people and services to call.
type Contacts struct {
	Primary  []Contact `yaml:"primary" json:"primary"`
	External []Contact `yaml:"external" json:"external"`
}

// Contact is a role and how to reach it.
type Contact struct {
	Role  string `yaml:"role" json:"role" check:"required"`
	Email string `yaml:"email" json:"email"`
}

// Escalation is one level of the escalation path: Role is due from From until Until
// after the incident started (Until zero: no end).
type Escalation struct {
	Role  string        `yaml:"role" json:"role" check:"required"`
	From  time.Duration `yaml:"from" json:"-"`
	Until time.Duration `yaml:"until,omitempty" json:"-"`
}

// Alerts are the critical alerts and the channels they go to.
type Alerts struct {
	Critical []string       `yaml:"critical" json:"critical"`
	Channels []AlertChannel `yaml:"channels" json:"channels"`
}

// AlertChannel is where alerts go: Email, Slack, Discord, PagerDuty.
type AlertChannel struct {
	Name   string `yaml:"name" json:"name" check:"required"`
	Target string `yaml:"target" json:"target"`
}

// Appendix holds the runbook's reference material.
type Appendix struct {
	Commands    []Command    `yaml:"commands" json:"commands"`
	ConfigFiles []ConfigFile `yaml:"config_files" json:"config_files"`
	Resources   []Resource   `yaml:"resources" json:"resources"`
}

// ConfigFile names a configuration file on the system the runbook belongs to.
type ConfigFile struct {
	Name string `yaml:"name" json:"name" check:"required"`
	Path string `yaml:"path" json:"path"`
}

// Resource is a link to further reading.
type Resource struct {
	Title string `yaml:"title" json:"title" check:"required"`
	URL   string `yaml:"url" json:"url"`
}

// Scenario is one disaster and its recovery plan.
type Scenario struct {
	ID       string        `yaml:"id" json:"id" check:"required"`
	Name     string        `yaml:"name" json:"name" check:"required"`
	RTO      time.Duration `yaml:"rto" json:"-" check:"required"`
	RPO      time.Duration `yaml:"rpo" json:"-" check:"required"`
	Contact  string        `yaml:"contact" json:"contact"`
	RTONote  string        `yaml:"rto_note,omitempty" json:"rto_note,omitempty"`
	Symptoms []string      `yaml:"symptoms" json:"symptoms"`
	Steps    []Step        `yaml:"steps" json:"steps" check:"required"`
}

// Step is one numbered step of a scenario.
type Step struct {
	Title string   `yaml:"title" json:"title" check:"required"`
	Kind  StepKind `yaml:"kind" json:"kind"`
	// Budget is the time the runbook gives the step; zero means untimed.
	Budget time.Duration `yaml:"budget,omitempty" json:"-"`
	// Timing keeps the runbook's words for an untimed step ("Immediate").
	Timing      string    `yaml:"timing,omitempty" json:"timing,omitempty"`
	Description string    `yaml:"description,omitempty" json:"description,omitempty"`
	URL         string    `yaml:"url,omitempty" json:"url,omitempty"`
	Commands    []Command `yaml:"commands,omitempty" json:"commands,omitempty"`
	Items       []string  `yaml:"items,omitempty" json:"items,omitempty"`
}

// StepKind says what the console does for a step.
type StepKind string

const (
	KindManual  StepKind = "manual"  // the operator does it and ticks it off
	KindCommand StepKind = "command" // shell commands the console shows and may run
	KindRestore StepKind = "restore" // the console's safe restore
	KindChecks  StepKind = "checks"  // the integrity checks
	KindHealth  StepKind = "health"  // an HTTP check of the step's URL
	KindNotify  StepKind = "notify"  // telling people
)

// StepKinds lists the valid kinds in the order the docs give them.
var StepKinds = []StepKind{KindManual, KindCommand, KindRestore, KindChecks, KindHealth, KindNotify}

func (k StepKind) valid() bool {
	for _, v := range StepKinds {
		if k == v {
			return true
		}
	}
	return false
}

// Command is one command a step shows: a shell snippet (Run) or a query to run in psql
// against the database (SQL). Platform is empty when it applies everywhere. A Reference
// command (the legacy restore script, with its placeholder password) is shown for
// reference only and never run from drconsole.
//
// Commands are templates: $DB_HOST, $DB_PORT, $DB_USER, $DB_NAME, $S3_BUCKET,
// $S3_BUCKET_SECONDARY and $BACKUP_DIR (or ${NAME}) are filled from drconsole's
// configuration when known (Expand), so what is shown and run is the server being
// recovered; any other $NAME is left to the shell.
type Command struct {
	Note      string `yaml:"note,omitempty" json:"note,omitempty"`
	Platform  string `yaml:"platform,omitempty" json:"platform,omitempty"`
	Run       string `yaml:"run,omitempty" json:"run,omitempty"`
	SQL       string `yaml:"sql,omitempty" json:"sql,omitempty"`
	Reference bool   `yaml:"reference,omitempty" json:"reference,omitempty"`
}

// TemplateVars are the names a command may use for drconsole's configuration.
var TemplateVars = []string{"DB_HOST", "DB_PORT", "DB_USER", "DB_NAME", "S3_BUCKET", "S3_BUCKET_SECONDARY", "BACKUP_DIR"}

// Expand fills the command's template names that vars knows; the others stay as written.
func (c Command) Expand(vars map[string]string) Command {
	c.Run, c.SQL = expand(c.Run, vars), expand(c.SQL, vars)
	return c
}

// expand replaces $NAME and ${NAME} for the TemplateVars that vars gives a value, and
// leaves every other character as it is.
func expand(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '$' {
			if name, n := templateName(s[i+1:]); n > 0 {
				if v := vars[name]; v != "" {
					b.WriteString(v)
					i += n
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// templateName reads a template name after a '$' ("NAME…" or "{NAME}…") and how many
// bytes it takes; 0 when none of TemplateVars starts there.
func templateName(s string) (string, int) {
	for _, name := range TemplateVars {
		if strings.HasPrefix(s, "{"+name+"}") {
			return name, len(name) + 2
		}
		if strings.HasPrefix(s, name) && (len(s) == len(name) || !isNameByte(s[len(name)])) {
			return name, len(name)
		}
	}
	return "", 0
}

func isNameByte(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// CheckDef is one of the application's integrity checks, as the runbook writes it.
type CheckDef struct {
	Name     string `yaml:"name" json:"name" check:"required"`
	SQL      string `yaml:"sql" json:"sql" check:"required"`
	Table    string `yaml:"table,omitempty" json:"table,omitempty"`       // skipped when this table does not exist
	Rows     bool   `yaml:"rows,omitempty" json:"rows,omitempty"`         // list the rows instead of one value
	Compare  bool   `yaml:"compare,omitempty" json:"compare,omitempty"`   // compare with the live database
	Database bool   `yaml:"database,omitempty" json:"database,omitempty"` // the query takes the database's name as $1
	Expect   string `yaml:"expect,omitempty" json:"expect,omitempty"`     // the value that passes; else a warning
	Warning  string `yaml:"warning,omitempty" json:"warning,omitempty"`   // what to say when Expect is not met
}

// Platforms are the deployment variants a command may be specific to.
var Platforms = []string{"kubernetes", "docker-compose", "systemd"}

// Scenario returns the scenario with the given id.
func (r *Runbook) Scenario(id string) (*Scenario, bool) {
	for i := range r.Scenarios {
		if r.Scenarios[i].ID == id {
			return &r.Scenarios[i], true
		}
	}
	return nil, false
}

// Planned is the sum of the step budgets (untimed steps count zero).
func (s *Scenario) Planned() time.Duration {
	var d time.Duration
	for _, st := range s.Steps {
		d += st.Budget
	}
	return d
}

// PlanExceedsRTO reports whether the step budgets add up to more than the RTO: the plan
// as written cannot meet its target, and the operator must be told.
func (s *Scenario) PlanExceedsRTO() bool {
	return s.RTO > 0 && s.Planned() > s.RTO
}

// PlanWarning is the sentence to show wherever the plan is shown, or "" when the plan fits.
func (s *Scenario) PlanWarning() string {
	if !s.PlanExceedsRTO() {
		return ""
	}
	return fmt.Sprintf("the steps' budgets add up to %s (%d min), more than the %s RTO (%d min): this plan cannot meet its target as written",
		FormatDuration(s.Planned()), int(s.Planned().Minutes()), FormatDuration(s.RTO), int(s.RTO.Minutes()))
}

//go:embed runbook.yaml
var defaultYAML []byte

// DefaultYAML returns the embedded default runbook's file, as exported.
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }

// Default returns the embedded default runbook (the seed runbook). Each call returns a
// fresh copy the caller may change.
func Default() *Runbook {
	r, problems := Parse("runbook.yaml", defaultYAML)
	if HasErrors(problems) {
		panic("checklists: the embedded runbook is invalid: " + problems[0].String())
	}
	return r
}

// FormatDuration writes a duration the way the runbook does: 10m, 1h30m, 2h.
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0m"
	}
	neg := d < 0
	if neg {
		d = -d
	}
	d = d.Round(time.Second)
	h := d / time.Hour
	m := (d % time.Hour) / time.Minute
	s := (d % time.Minute) / time.Second
	out := ""
	if h > 0 {
		out += fmt.Sprintf("%dh", h)
	}
	if m > 0 {
		out += fmt.Sprintf("%dm", m)
	}
	if s > 0 {
		out += fmt.Sprintf("%ds", s)
	}
	if neg {
		out = "-" + out
	}
	return out
}
