// Package inject reads a facilitator's inject file: the events a drill or a tabletop
// exercise throws at the team, each due at a time or when a step starts.
package inject

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// What an inject does for real in a sandbox drill (a tabletop only shows it).
const (
	// PrimaryUnreachable: the primary location becomes unreachable.
	PrimaryUnreachable = "primary-unreachable"
	// NewestBackupCorrupt: the newest backup fails verification, in every location.
	NewestBackupCorrupt = "newest-backup-corrupt"
	// Escalate: an escalation is due; the team must page or decline it.
	Escalate = "escalate"
)

// Applies are the known apply values.
var Applies = []string{PrimaryUnreachable, NewestBackupCorrupt, Escalate}

// Inject is one event of the file. It is due At after the drill started, or when step
// Step (1-based) starts; exactly one of the two is set.
type Inject struct {
	At     time.Duration
	Step   int
	Event  string // one line shown to the team
	Detail string
	Apply  string // "", or one of Applies
	Line   int    // where it is in its file
}

// Due reports whether the inject is due elapsed after the drill started, given whether
// each step (1-based) has started.
func (in Inject) Due(elapsed time.Duration, started func(step int) bool) bool {
	if in.Step > 0 {
		return started(in.Step)
	}
	return elapsed >= in.At
}

// When says when it is due, in words: "at 10m" or "when step 3 starts".
func (in Inject) When() string {
	if in.Step > 0 {
		return fmt.Sprintf("when step %d starts", in.Step)
	}
	return "at " + formatDuration(in.At)
}

// Error is one thing wrong with an inject file, at a line of it.
type Error struct {
	File    string
	Line    int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Message) }

// Errors are every problem found in a file.
type Errors []*Error

func (es Errors) Error() string {
	var s []string
	for _, e := range es {
		s = append(s, e.Error())
	}
	return strings.Join(s, "\n")
}

//go:embed examples/*.yaml
var examples embed.FS

// Example is the shipped inject file of a scenario, and its name.
func Example(scenario string) (name string, data []byte, err error) {
	name = "examples/" + scenario + ".yaml"
	data, err = examples.ReadFile(name)
	if err != nil {
		return "", nil, fmt.Errorf("no example inject file for scenario %q", scenario)
	}
	return name, data, nil
}

// Load reads the inject file at path ("example": the shipped one of the scenario) and
// parses it against the scenario's step titles.
func Load(path, scenario string, steps []string) ([]Inject, error) {
	if path == "example" {
		name, data, err := Example(scenario)
		if err != nil {
			return nil, err
		}
		return Parse(name, data, steps)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is said once, below
		}
		return nil, fmt.Errorf("inject file %s cannot be read: %w", path, err)
	}
	return Parse(path, data, steps)
}

// Parse decodes an inject file strictly: a list of mappings with the fields at or
// on_step, event, detail and apply, nothing else. steps are the scenario's step titles,
// in order: on_step names one by number or title. Errors give file:line.
func Parse(file string, data []byte, steps []string) ([]Inject, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{file, 1, "the file is empty: give a list of injects (- at: 10m\\n  event: …)"}}
		}
		return nil, Errors{syntaxError(file, err)}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.SequenceNode {
		return nil, Errors{{file, root.Line, "an inject file is a list of injects (- at: 10m\\n  event: …), not " + kindName(root)}}
	}
	var errs Errors
	fail := func(n *yaml.Node, format string, args ...any) {
		errs = append(errs, &Error{file, n.Line, fmt.Sprintf(format, args...)})
	}
	var out []Inject
	for i, item := range root.Content {
		what := fmt.Sprintf("inject %d", i+1)
		if item.Kind != yaml.MappingNode {
			fail(item, "%s must be a mapping (at or on_step, event, detail, apply), not %s", what, kindName(item))
			continue
		}
		in := Inject{Line: item.Line}
		seen := map[string]bool{}
		var at, onStep *yaml.Node
		for j := 0; j+1 < len(item.Content); j += 2 {
			k, v := item.Content[j], item.Content[j+1]
			if seen[k.Value] {
				fail(k, "%s: field %q is given twice", what, k.Value)
				continue
			}
			seen[k.Value] = true
			if v.Kind != yaml.ScalarNode {
				fail(v, "%s: %s must be a single value, not %s", what, k.Value, kindName(v))
				continue
			}
			switch k.Value {
			case "at":
				at = v
				d, err := parseDuration(v.Value)
				if err != nil {
					fail(v, "%s: at %q %v", what, v.Value, err)
				}
				in.At = d
			case "on_step":
				onStep = v
				n, err := stepNumber(v.Value, steps)
				if err != nil {
					fail(v, "%s: on_step %q %v", what, v.Value, err)
				}
				in.Step = n
			case "event":
				in.Event = strings.TrimSpace(v.Value)
				if in.Event == "" || strings.Contains(in.Event, "\n") {
					fail(v, "%s: event must be one line of text", what)
				}
			case "detail":
				in.Detail = strings.TrimSpace(v.Value)
			case "apply":
				in.Apply = v.Value
				if !known(v.Value) {
					fail(v, "%s: apply %q is unknown: use %s", what, v.Value, strings.Join(Applies, ", "))
				}
			default:
				fail(k, "%s: unknown field %q (known fields: at, on_step, event, detail, apply)", what, k.Value)
			}
		}
		switch {
		case at != nil && onStep != nil:
			fail(onStep, "%s has both at and on_step: give one", what)
		case at == nil && onStep == nil:
			fail(item, "%s is missing when it is due: at (like 10m) or on_step (a step's number or title)", what)
		}
		if !seen["event"] {
			fail(item, "%s is missing its event (one line shown to the team)", what)
		}
		out = append(out, in)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

func known(apply string) bool {
	for _, a := range Applies {
		if a == apply {
			return true
		}
	}
	return false
}

// parseDuration reads a time since the drill started: Go's form (10m, 1h30m), with 0
// allowed and a bare number refused (minutes or seconds?).
func parseDuration(s string) (time.Duration, error) {
	if _, err := strconv.ParseFloat(s, 64); err == nil && s != "0" {
		return 0, fmt.Errorf("has no unit: write it like %sm or 1h30m", s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("is not a duration: write it like 10m or 1h30m")
	}
	if d < 0 {
		return 0, errors.New("must not be negative")
	}
	return d, nil
}

func stepNumber(s string, steps []string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > len(steps) {
			return 0, fmt.Errorf("is not a step of the scenario: it has steps 1 to %d", len(steps))
		}
		return n, nil
	}
	for i, t := range steps {
		if strings.EqualFold(strings.TrimSpace(s), t) {
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("is not a step of the scenario: its steps are %s", quoteAll(steps))
}

func quoteAll(ss []string) string {
	var q []string
	for i, s := range ss {
		q = append(q, fmt.Sprintf("%d %q", i+1, s))
	}
	return strings.Join(q, ", ")
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func syntaxError(file string, err error) *Error {
	e := &Error{File: file, Line: 1, Message: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Message = "not valid YAML: " + m[2]
	}
	return e
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

// formatDuration writes 10m, 1h30m, 45s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
