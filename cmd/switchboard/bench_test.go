package main

import (
	"testing"

	"switchboard/bench"
)

// TestFailedRun: a run that failed ends with how many failures it found
// (those not listed too), its losses, and the first failure in words,
// whatever kind it is: a goodput not held is not called a correctness
// failure with losses of zero. A run that passed ends without an error.
func TestFailedRun(t *testing.T) {
	if err := failedRun(&bench.Result{}); err != nil {
		t.Fatalf("a run without failures: %v", err)
	}
	res := &bench.Result{
		Failures:          []string{"goodput 900 msg/s is 45% of capacity, under 50%", "a second one"},
		FailuresNotListed: 3,
		Lost:              2,
		Reordered:         1,
	}
	const want = "5 failures (lost 2, duplicated 0, reordered 1); the first: goodput 900 msg/s is 45% of capacity, under 50%"
	if err := failedRun(res); err == nil || err.Error() != want {
		t.Fatalf("failedRun: %v, want %q", err, want)
	}
}
