//go:build faultpoints

package recovery

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// faultpoint holds a run at a named point when DRCONSOLE_FAULTPOINT names it, so that a
// fault-injection test can kill the process, interrupt it or restart the server exactly
// there; SIGUSR1 lets the run go on. Only test builds (go build -tags faultpoints) have
// it: in the product it is an empty function (faultpoint_off.go).
func faultpoint(ctx context.Context, name string) {
	if os.Getenv("DRCONSOLE_FAULTPOINT") != name {
		return
	}
	cont := make(chan os.Signal, 1)
	signal.Notify(cont, syscall.SIGUSR1)
	defer signal.Stop(cont)
	fmt.Fprintf(os.Stderr, "faultpoint %s: waiting\n", name)
	select {
	case <-ctx.Done():
	case <-cont:
	}
}
