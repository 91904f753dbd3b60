//go:build !faultpoints

package recovery

import "context"

// faultpoint is a named point of a restore where fault-injection tests stop the run (see
// faultpoint.go, built with -tags faultpoints). Here it does nothing.
func faultpoint(context.Context, string) {}
