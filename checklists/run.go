package checklists

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

// ErrNotConfirmed is returned by RunCommand when the operator did not confirm: the
// command was shown (and that is on record) but not run.
var ErrNotConfirmed = errors.New("command not run: it was not confirmed")

// RunRequest is a step's command that the operator has been shown.
type RunRequest struct {
	Step    int    // 1-based step number, 0 when not a step's
	Command string // the exact text shown to the operator, run with /bin/sh -c unless Argv is set
	// Argv, when set, is run instead of sh -c Command (a runbook's sql: step through psql,
	// with no shell to quote for); Command is still what is shown and recorded.
	Argv []string
	// Confirmed must be true for the command to run: the caller sets it only after the
	// operator explicitly said yes to this exact command.
	Confirmed bool
	// DryRun (a drill or tabletop) records what would have run and runs nothing.
	DryRun bool
	Dir    string             // working directory; the current one when empty
	Env    []string           // environment; the process's when nil
	Output func(chunk []byte) // receives output (stdout and stderr) as it comes; may be nil
	// Grace is how long a cancelled command gets between SIGTERM and SIGKILL (default 5s).
	Grace time.Duration
}

// RunResult is what became of a command.
type RunResult struct {
	Ran       bool
	ExitCode  int // -1 when it did not exit normally (killed by a signal, not started)
	Output    string
	Truncated bool // Output holds only the last MaxOutput bytes
	Duration  time.Duration
}

// RunCommand records the command as shown, then, in a dry run, records it as what
// would have run; otherwise, when confirmed, runs it in its own process group (so that
// cancelling ctx stops it and everything it started), streams its output, and records
// its exit code and the end of its output. An exit code other than 0 is a result, not
// an error; the error is for not confirmed, not startable, cancelled, or not recorded.
//
// j may be nil (no incident is open): nothing is recorded.
func RunCommand(ctx context.Context, j *Journal, req RunRequest) (RunResult, error) {
	record := func(e Event) error {
		if j == nil {
			return nil
		}
		return j.Record(e)
	}
	if err := record(Event{Type: EventCommandShown, Step: req.Step, Command: req.Command}); err != nil {
		return RunResult{ExitCode: -1}, err
	}
	if req.DryRun {
		return RunResult{ExitCode: -1}, record(Event{Type: EventCommandRun, Step: req.Step, Command: req.Command, DryRun: true, Note: "drill: not run"})
	}
	if !req.Confirmed {
		return RunResult{ExitCode: -1}, ErrNotConfirmed
	}
	grace := req.Grace
	if grace <= 0 {
		grace = 5 * time.Second
	}
	argv := req.Argv
	if len(argv) == 0 {
		argv = []string{"/bin/sh", "-c", req.Command}
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = req.Dir, req.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
	cmd.WaitDelay = grace
	out := &tailWriter{max: MaxOutput, stream: req.Output}
	cmd.Stdout, cmd.Stderr = out, out

	start := time.Now()
	runErr := cmd.Run()
	res := RunResult{Ran: cmd.ProcessState != nil, ExitCode: -1, Duration: time.Since(start)}
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
		// A killed shell leaves its children in the group: make sure none outlives us.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	res.Output, res.Truncated = out.String(), out.dropped
	e := Event{Type: EventCommandRun, Step: req.Step, Command: req.Command, Output: res.Output, OutputTruncated: res.Truncated, Seconds: res.Duration.Seconds()}
	if res.Ran {
		code := res.ExitCode
		e.ExitCode = &code
	}
	var err error
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		err = fmt.Errorf("command cancelled: %w", ctx.Err())
		e.Error = "cancelled"
	case runErr != nil && !errors.As(runErr, &exitErr):
		err = fmt.Errorf("run command: %w", runErr)
		e.Error = runErr.Error()
	}
	if rerr := record(e); rerr != nil && err == nil {
		err = rerr
	}
	return res, err
}

// tailWriter passes output on as it comes and keeps its last max bytes.
type tailWriter struct {
	max     int
	stream  func([]byte)
	buf     []byte
	dropped bool
}

func (w *tailWriter) Write(p []byte) (int, error) {
	if w.stream != nil {
		w.stream(append([]byte(nil), p...))
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) > 2*w.max {
		w.buf = append(w.buf[:0:0], w.buf[len(w.buf)-w.max:]...)
		w.dropped = true
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	if len(w.buf) > w.max {
		w.dropped = true
		return string(w.buf[len(w.buf)-w.max:])
	}
	return string(w.buf)
}
