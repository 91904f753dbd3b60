package checklists

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRunCommand(t *testing.T) {
	dir := t.TempDir()
	j := startTest(t, dir, &fakeClock{now: t0}, false)
	marker := filepath.Join(dir, "ran")
	cmd := "echo out; echo err >&2; touch " + marker + "; exit 3"

	if _, err := RunCommand(context.Background(), j, RunRequest{Step: 2, Command: cmd}); !errors.Is(err, ErrNotConfirmed) {
		t.Fatalf("unconfirmed: %v", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("an unconfirmed command ran")
	}
	res, err := RunCommand(context.Background(), j, RunRequest{Step: 2, Command: cmd, DryRun: true, Confirmed: true})
	if err != nil || res.Ran {
		t.Fatalf("dry run: %v %+v", err, res)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a dry run ran the command")
	}

	var mu sync.Mutex
	var streamed strings.Builder
	res, err = RunCommand(context.Background(), j, RunRequest{Step: 2, Command: cmd, Confirmed: true, Output: func(b []byte) {
		mu.Lock()
		streamed.Write(b)
		mu.Unlock()
	}})
	if err != nil || !res.Ran || res.ExitCode != 3 || res.Output != "out\nerr\n" || streamed.String() != "out\nerr\n" {
		t.Fatalf("run: %v %+v streamed %q", err, res, streamed.String())
	}
	inc := j.Incident()
	var kinds []string
	for _, c := range inc.Commands {
		switch {
		case c.DryRun:
			kinds = append(kinds, "dry")
		case c.Ran:
			kinds = append(kinds, "ran:"+string(rune('0'+*c.ExitCode)))
		default:
			kinds = append(kinds, "shown")
		}
	}
	// Shown and not confirmed; shown and dry-run; shown and run: three commands.
	if strings.Join(kinds, ",") != "shown,dry,ran:3" {
		t.Errorf("recorded: %v", kinds)
	}
}

func TestRunCommandCancelStopsTheGroup(t *testing.T) {
	dir := t.TempDir()
	j := startTest(t, dir, &fakeClock{now: t0}, false)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	pidFile := filepath.Join(dir, "child.pid")
	start := time.Now()
	// The shell starts a grandchild that ignores nothing; both must go.
	res, err := RunCommand(ctx, j, RunRequest{Command: "sleep 30 & echo $! > " + pidFile + "; wait", Confirmed: true, Grace: time.Second})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("cancel: %v after %s (%+v)", err, time.Since(start), res)
	}
	if inc := j.Incident(); inc.Commands[len(inc.Commands)-1].Error != "cancelled" {
		t.Errorf("not recorded as cancelled: %+v", inc.Commands)
	}
}

func TestRunCommandBoundsOutput(t *testing.T) {
	j := startTest(t, t.TempDir(), &fakeClock{now: t0}, false)
	res, err := RunCommand(context.Background(), j, RunRequest{Command: "head -c 200000 /dev/zero | tr '\\0' x; echo END", Confirmed: true})
	if err != nil || !res.Truncated || len(res.Output) != MaxOutput || !strings.HasSuffix(res.Output, "END\n") {
		t.Fatalf("%v truncated=%v len=%d", err, res.Truncated, len(res.Output))
	}
	if c := j.Incident().Commands[0]; !c.OutputTruncated || len(c.Output) > MaxOutput+4 {
		t.Errorf("journal output: %d bytes", len(c.Output))
	}
}
