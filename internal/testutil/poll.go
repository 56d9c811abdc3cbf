// Package testutil holds what the tests of several packages share.
package testutil

import (
	"testing"
	"time"
)

// Eventually polls cond every few milliseconds until it holds, and fails t
// after d, naming what it waited for and, if given, what detail returns
// (a server's log, say). Tests wait on conditions with it, never on a fixed
// sleep: a negative check waits for a condition that shows the work is done
// (a later request answered, a probe through the same queue), then checks.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool, detail ...func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			for _, f := range detail {
				msg += "\n" + f()
			}
			t.Fatalf("timed out after %v waiting for %s%s", d, what, msg)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
