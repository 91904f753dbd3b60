package checklists

import (
	"encoding/json"
	"time"
)

// JSON gives durations as minutes (rto_minutes, budget_minutes, …) so that scripts need
// not parse Go durations.

func minutes(d time.Duration) float64 { return d.Minutes() }

// MarshalJSON adds rto_minutes, rpo_minutes, planned_minutes and plan_warning.
func (s Scenario) MarshalJSON() ([]byte, error) {
	type plain Scenario
	return json.Marshal(struct {
		plain
		RTOMinutes     float64 `json:"rto_minutes"`
		RPOMinutes     float64 `json:"rpo_minutes"`
		PlannedMinutes float64 `json:"planned_minutes"`
		PlanWarning    string  `json:"plan_warning,omitempty"`
	}{plain(s), minutes(s.RTO), minutes(s.RPO), minutes(s.Planned()), s.PlanWarning()})
}

// MarshalJSON adds budget_minutes (0: untimed).
func (st Step) MarshalJSON() ([]byte, error) {
	type plain Step
	return json.Marshal(struct {
		plain
		BudgetMinutes float64 `json:"budget_minutes"`
	}{plain(st), minutes(st.Budget)})
}

// MarshalJSON adds from_minutes and until_minutes (absent: no end).
func (e Escalation) MarshalJSON() ([]byte, error) {
	type plain Escalation
	v := struct {
		plain
		FromMinutes  float64  `json:"from_minutes"`
		UntilMinutes *float64 `json:"until_minutes,omitempty"`
	}{plain: plain(e), FromMinutes: minutes(e.From)}
	if e.Until > 0 {
		u := minutes(e.Until)
		v.UntilMinutes = &u
	}
	return json.Marshal(v)
}

// MarshalJSON gives rto_minutes and rpo_minutes.
func (o Objectives) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		RTOMinutes float64 `json:"rto_minutes"`
		RPOMinutes float64 `json:"rpo_minutes"`
	}{minutes(o.RTO), minutes(o.RPO)})
}
