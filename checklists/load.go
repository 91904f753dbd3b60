package checklists

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a runbook file, at a place in it. Warnings do not make
// the runbook unusable; errors do.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Message string `json:"message"`
	Warning bool   `json:"warning,omitempty"`
}

// String is "FILE:LINE:COL: message", with "warning: " before the message for warnings.
func (p Problem) String() string {
	w := ""
	if p.Warning {
		w = "warning: "
	}
	return fmt.Sprintf("%s:%d:%d: %s%s", p.File, p.Line, p.Col, w, p.Message)
}

// HasErrors reports whether any of the problems is an error rather than a warning.
func HasErrors(problems []Problem) bool {
	for _, p := range problems {
		if !p.Warning {
			return true
		}
	}
	return false
}

// ErrInvalidRunbook is wrapped by Load's error when the file has errors.
var ErrInvalidRunbook = errors.New("runbook has errors")

// Load reads and validates a runbook file. The problems include warnings even when the
// runbook is usable; err is non-nil (wrapping ErrInvalidRunbook) when the file cannot be
// read or has errors, and the runbook is then nil.
func Load(path string) (*Runbook, []Problem, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read runbook: %w", err)
	}
	r, problems := Parse(path, data)
	if HasErrors(problems) {
		n := 0
		for _, p := range problems {
			if !p.Warning {
				n++
			}
		}
		first := ""
		for _, p := range problems {
			if !p.Warning {
				first = p.String()
				break
			}
		}
		return nil, problems, fmt.Errorf("%w: %d error(s) in %s, the first: %s", ErrInvalidRunbook, n, path, first)
	}
	return r, problems, nil
}

// Parse decodes and validates a runbook. name is the file name used in problems. It
// returns every problem it finds, not just the first; the runbook is only fit for use
// when none of them is an error (see HasErrors).
func Parse(name string, data []byte) (*Runbook, []Problem) {
	d := &decoder{file: name, pos: map[string]*yaml.Node{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		d.problems = append(d.problems, syntaxProblem(name, err))
		return &Runbook{}, d.problems
	}
	r := &Runbook{}
	if len(doc.Content) == 0 {
		d.problems = append(d.problems, Problem{File: name, Line: 1, Col: 1, Message: "the file is empty: a runbook needs at least one scenario"})
		return r, d.problems
	}
	d.decode(doc.Content[0], reflect.ValueOf(r).Elem(), "")
	d.validate(r)
	return r, d.problems
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func syntaxProblem(file string, err error) Problem {
	p := Problem{File: file, Line: 1, Col: 1, Message: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Message = "not valid YAML: " + m[2]
	}
	return p
}

// decoder walks the YAML tree itself, rather than yaml.Unmarshal, so that it can keep
// going after a problem and give every problem its line and column.
type decoder struct {
	file     string
	problems []Problem
	pos      map[string]*yaml.Node // value node of each path ("scenarios[1].rto")
}

func (d *decoder) add(n *yaml.Node, warning bool, format string, args ...any) {
	line, col := 1, 1
	if n != nil && n.Line > 0 {
		line, col = n.Line, n.Column
	}
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Col: col, Message: fmt.Sprintf(format, args...), Warning: warning})
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) { d.add(n, false, format, args...) }
func (d *decoder) warnf(n *yaml.Node, format string, args ...any)  { d.add(n, true, format, args...) }

// at returns the node for a path, or the nearest enclosing one that exists.
func (d *decoder) at(path string) *yaml.Node {
	for path != "" {
		if n, ok := d.pos[path]; ok {
			return n
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return d.pos[""]
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	stepKindType = reflect.TypeFor[StepKind]()
)

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "text"
}

// thing names a struct type in the operator's words: BackupLocation → "backup location".
func thing(t reflect.Type) string {
	var b strings.Builder
	for i, r := range t.Name() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return strings.ToLower(b.String())
}

func fieldName(path string) string {
	if i := strings.LastIndexAny(path, ".]"); i >= 0 {
		if path[i] == ']' {
			return path
		}
		return path[i+1:]
	}
	return path
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	d.pos[path] = n
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value is the zero value; required fields are checked later
	}
	switch {
	case v.Type() == durationType:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, "%s must be a duration like 10m or 1h30m, not %s", fieldName(path), kindName(n))
			return
		}
		if n.Tag == "!!int" || n.Tag == "!!float" {
			d.errorf(n, "%s %s is not a duration: give the unit, like %sm or 1h30m", fieldName(path), n.Value, n.Value)
			return
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil {
			d.errorf(n, "%s %q is not a duration: write it like 10m or 1h30m", fieldName(path), n.Value)
			return
		}
		if dur < 0 {
			d.errorf(n, "%s %s must not be negative", fieldName(path), n.Value)
			return
		}
		v.SetInt(int64(dur))
	case v.Type() == stepKindType:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, "step kind must be one of %s, not %s", kindList(), kindName(n))
			return
		}
		k := StepKind(n.Value)
		if !k.valid() {
			d.errorf(n, "step kind %q is unknown: use one of %s", n.Value, kindList())
			return
		}
		v.SetString(n.Value)
	case v.Kind() == reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, "%s must be text, not %s", fieldName(path), kindName(n))
			return
		}
		v.SetString(n.Value)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || err != nil {
			d.errorf(n, "%s must be true or false, not %q", fieldName(path), n.Value)
			return
		}
		v.SetBool(b)
	case v.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, "%s must be a list, not %s", fieldName(path), kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case v.Kind() == reflect.Struct:
		d.decodeStruct(n, v, path)
	default:
		panic("checklists: no decoder for " + v.Type().String())
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	what := thing(t)
	if n.Kind != yaml.MappingNode {
		if path == "" {
			d.errorf(n, "a runbook must be a mapping of fields (title, scenarios, …), not %s", kindName(n))
		} else {
			d.errorf(n, "%s must be a mapping, not %s", fieldName(path), kindName(n))
		}
		return
	}
	fields := map[string]int{}
	var known []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		fields[name] = i
		known = append(known, name)
	}
	seen := map[string]bool{}
	prefix := path
	if prefix != "" {
		prefix += "."
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		idx, ok := fields[k.Value]
		if !ok {
			d.errorf(k, "unknown field %q in %s (known fields: %s)", k.Value, what, strings.Join(known, ", "))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, "field %q is given twice in this %s", k.Value, what)
			continue
		}
		seen[k.Value] = true
		d.decode(val, v.Field(idx), prefix+k.Value)
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Tag.Get("check") != "required" || !v.Field(i).IsZero() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if seen[name] {
			if v.Field(i).Kind() != reflect.Int64 { // a duration given as 0 is a choice
				d.errorf(d.pos[prefix+name], "%s has an empty %s", what, name)
			}
			continue
		}
		d.errorf(n, "%s is missing its %s", what, name)
	}
}

func kindList() string {
	s := make([]string, len(StepKinds))
	for i, k := range StepKinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

var scenarioID = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// validate checks what the types alone cannot: unique ids, what each kind of step
// needs, and whether the plan fits in its RTO.
func (d *decoder) validate(r *Runbook) {
	if len(r.Scenarios) == 0 {
		d.errorf(d.at("scenarios"), "the runbook has no scenarios")
	}
	firstID := map[string]*yaml.Node{}
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		sp := fmt.Sprintf("scenarios[%d]", i)
		if s.ID != "" {
			idNode := d.at(sp + ".id")
			if first, dup := firstID[s.ID]; dup {
				d.errorf(idNode, "duplicate scenario id %q (first used on line %d)", s.ID, first.Line)
			} else {
				firstID[s.ID] = idNode
			}
			if !scenarioID.MatchString(s.ID) {
				d.errorf(idNode, "scenario id %q must be lower-case words joined by dashes, like database-corruption", s.ID)
			}
		}
		for j := range s.Steps {
			st := &s.Steps[j]
			p := fmt.Sprintf("%s.steps[%d]", sp, j)
			if st.Kind == "" {
				st.Kind = KindManual
			}
			if st.Kind == KindHealth && st.URL == "" {
				d.errorf(d.at(p), "step %q is a health check but has no url", st.Title)
			}
			if st.Kind == KindCommand && len(st.Commands) == 0 {
				d.errorf(d.at(p), "step %q is a command step but has no commands", st.Title)
			}
			if st.Budget > 0 && st.Timing != "" {
				d.errorf(d.at(p+".timing"), "step %q has both a budget and a timing: timing is for untimed steps", st.Title)
			}
			d.validateCommands(st.Commands, p+".commands")
		}
		if s.PlanExceedsRTO() {
			d.warnf(d.at(sp+".rto"), "scenario %q: %s", s.ID, s.PlanWarning())
		}
	}
	d.validateCommands(r.Appendix.Commands, "appendix.commands")
	for i, e := range r.Escalation {
		p := fmt.Sprintf("escalation[%d]", i)
		if e.Until != 0 && e.Until <= e.From {
			d.errorf(d.at(p+".until"), "escalation to %s: until (%s) must be after from (%s)", e.Role, FormatDuration(e.Until), FormatDuration(e.From))
		}
		if i > 0 {
			prev := r.Escalation[i-1]
			if prev.Until == 0 {
				d.errorf(d.at(p), "escalation to %s comes after %s, which has no end (until)", e.Role, prev.Role)
			} else if e.From != prev.Until {
				d.warnf(d.at(p+".from"), "escalation to %s starts at %s but %s ends at %s", e.Role, FormatDuration(e.From), prev.Role, FormatDuration(prev.Until))
			}
		}
	}
	for i, item := range r.PostRecovery {
		if strings.TrimSpace(item) == "" {
			d.errorf(d.at(fmt.Sprintf("post_recovery_checklist[%d]", i)), "post-recovery checklist item %d is empty", i+1)
		}
	}
}

func (d *decoder) validateCommands(cmds []Command, path string) {
	for k, c := range cmds {
		p := fmt.Sprintf("%s[%d]", path, k)
		switch {
		case c.Run == "" && c.SQL == "":
			d.errorf(d.at(p), "command needs either run (a shell command) or sql (a query)")
		case c.Run != "" && c.SQL != "":
			d.errorf(d.at(p), "command has both run and sql: give one")
		}
		if c.Platform != "" && !validPlatform(c.Platform) {
			d.errorf(d.at(p+".platform"), "platform %q is unknown: use one of %s, or leave it out", c.Platform, strings.Join(Platforms, ", "))
		}
	}
}

func validPlatform(p string) bool {
	for _, v := range Platforms {
		if p == v {
			return true
		}
	}
	return false
}
