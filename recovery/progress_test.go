package recovery

import (
	"testing"
	"time"
)

func TestThrottlePassesFiguresDespiteChattyMessages(t *testing.T) {
	var got []Event
	r := Throttle(ReporterFunc(func(e Event) { got = append(got, e) }), 100*time.Millisecond)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 50; i++ { // 1 s of figures every 20 ms, a message every 10 ms
		at := t0.Add(time.Duration(i) * 20 * time.Millisecond)
		r.Report(Event{Time: at, Stage: StageStream, Read: int64(i)})
		r.Report(Event{Time: at.Add(10 * time.Millisecond), Stage: StageStream, Message: "pg_restore: line"})
	}
	r.Report(Event{Time: t0.Add(time.Second), Stage: StageDone, Final: true})
	figures, messages := 0, 0
	for _, e := range got {
		switch {
		case e.Message != "":
			messages++
		case !e.Final:
			figures++
		}
	}
	if messages != 50 {
		t.Errorf("messages passed = %d, want all 50", messages)
	}
	if figures < 9 || figures > 12 {
		t.Errorf("figure events passed = %d, want about 10 (one per 100 ms)", figures)
	}
	if !got[len(got)-1].Final {
		t.Error("final event dropped")
	}
}
