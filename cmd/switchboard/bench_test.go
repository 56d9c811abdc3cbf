package main

import (
	"strings"
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

// TestBenchCmdRefuses: the flags reach the run's checks as given: a
// scenario named after the flags, --cross without a cluster, --sources and
// --rates listed, --rate given to overload; each refusal names the flag. Every case also asks for
// --ping 1s, out of its bounds, so that none can start a run.
func TestBenchCmdRefuses(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ping", "1s", "phone"}, "--ping must be in [10s, 600s]"},
		{[]string{"phone", "--ping", "1s", "--cross", "0.5"}, "--cross 0.5 needs --cluster-nodes"},
		{[]string{"phone", "--ping", "1s", "--sources", "10.0.0.2,nonsense"}, `--sources: "nonsense" is not an IP address`},
		{[]string{"sweep", "--ping", "1s", "--rates", "300, 200"}, "--rates: 200 after 300: the rates must rise"},
		{[]string{"overload", "--ping", "1s", "--rate", "5000"}, "--rate is for chat, phone, group and slow: overload offers twice --capacity"},
	} {
		err := benchCmd(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench %s: %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
