package checklists

import (
	"strings"
	"testing"
	"time"
)

// Every message sent is in the report: delivered, failed with why, or without a result
// when drconsole ended while sending; and the escalation levels answered.
func TestReportNotifications(t *testing.T) {
	clk := &fakeClock{now: t0}
	j := startTest(t, t.TempDir(), clk, false)
	mustRecord(t, j,
		Event{Type: EventNotifySent, Ref: "n1", Channel: "ops-slack", Kind: "update", Step: 8, Title: "Database corruption: recovered", Note: "all good", Who: "alice"},
		Event{Type: EventNotifySent, Ref: "n1", Channel: "ops-mail", Kind: "update", Step: 8, Title: "Database corruption: recovered", Who: "alice"},
		Event{Type: EventNotifySent, Ref: "n1", Channel: "hook", Kind: "update", Step: 8, Title: "Database corruption: recovered", Who: "alice"},
	)
	clk.Advance(2 * time.Second)
	mustRecord(t, j,
		Event{Type: EventNotifyResult, Ref: "n1", Channel: "ops-slack", Result: ResultDelivered, Attempts: 2, Seconds: 1.5},
		Event{Type: EventNotifyResult, Ref: "n1", Channel: "ops-mail", Result: ResultFailed, Attempts: 1, Error: "not delivered to ops-mail: AUTH: 535 5.7.8 Authentication failed"},
		Event{Type: EventEscalationAck, Level: 2, Title: "Team Lead", Result: "paged", Who: "alice"},
	)
	inc := j.Incident()
	if len(inc.Notifications) != 3 || inc.Notifications[0].Result != ResultDelivered || inc.Notifications[0].Attempts != 2 ||
		inc.Notifications[1].Result != ResultFailed || inc.Notifications[2].Result != "" || !inc.Acknowledged(2) || inc.Acknowledged(3) {
		t.Fatalf("%+v %+v", inc.Notifications, inc.Escalations)
	}
	r := BuildReport(inc, nil, clk.now)
	if len(r.Notifications) != 3 || r.Notifications[2].Result != ResultUnknown || len(r.Escalations) != 1 {
		t.Fatalf("%+v", r.Notifications)
	}
	md := r.Markdown()
	for _, want := range []string{
		"## Updates and pages",
		"- 14:00:02 escalation level 2, Team Lead: paged by alice",
		"| 14:00:00 | 8 | ops-slack | update: Database corruption: recovered | delivered in 1.5s, attempt 2 |",
		"| 14:00:00 | 8 | ops-mail | update: Database corruption: recovered | **failed**: not delivered to ops-mail: AUTH: 535 5.7.8 Authentication failed |",
		"| 14:00:00 | 8 | hook | update: Database corruption: recovered | **no result recorded**: still sending, or drconsole ended first |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// A delivery that ends after the incident closed is still recorded; nothing else is.
func TestNotificationsAreRecordedAfterTheClose(t *testing.T) {
	clk := &fakeClock{now: t0}
	j := startTest(t, t.TempDir(), clk, false)
	mustRecord(t, j, Event{Type: EventNotifySent, Ref: "n1", Channel: "ops-slack", Kind: "update", Title: "closing"})
	if err := j.CloseIncident("recovered", ""); err != nil {
		t.Fatal(err)
	}
	mustRecord(t, j, Event{Type: EventNotifyResult, Ref: "n1", Channel: "ops-slack", Result: ResultDelivered, Attempts: 1})
	if err := j.Record(Event{Type: EventNote, Note: "late"}); err == nil {
		t.Error("a note was recorded after the close")
	}
	if n := j.Incident().Notifications; len(n) != 1 || n[0].Result != ResultDelivered {
		t.Errorf("%+v", n)
	}
}
