package bench

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// fakeMember is a generator process that measured res, or fails with err.
type fakeMember struct {
	res *Result
	cpu time.Duration
	err error
}

func (m *fakeMember) do(Step) error                { return m.err }
func (m *fakeMember) progress() counters           { return counters{} }
func (m *fakeMember) collect() (*Result, error)    { return m.res, m.err }
func (m *fakeMember) stop() (time.Duration, error) { return m.cpu, m.err }
func (m *fakeMember) abort(error)                  {}

// TestFleet: the fleet's step error names the process that failed, its
// collect fails when one process's does (rather than reporting the others'
// counts as the run's), and its CPU is every process's.
func TestFleet(t *testing.T) {
	ok := &fakeMember{res: &Result{Sent: 10}, cpu: time.Second}
	bad := &fakeMember{err: errors.New("bench: a worker exited"), cpu: 2 * time.Second}
	f := &fleet{members: []member{ok, bad}}
	if err := f.do(Step{Kind: "drain"}); err == nil || err.Error() != "process 2: bench: a worker exited" {
		t.Errorf("do: %v, want the second process's error", err)
	}
	if r, err := f.collect(); err == nil {
		t.Errorf("collect: %d sent and no error, want the second process's error", r.Sent)
	}
	if cpu, err := f.stop(); cpu != 3*time.Second || err == nil {
		t.Errorf("stop: CPU %v, error %v; want 3 s and the second process's error", cpu, err)
	}
}

// TestRunWorkerBadStart: a worker given no spec, a line that is not one, or
// a spec it cannot run exits with the reason; for the last it first tells
// the coordinator, which prints it ("worker failed to start: …").
func TestRunWorkerBadStart(t *testing.T) {
	tests := []struct {
		name, in, err, out string
	}{
		{name: "no spec", in: "", err: "bench worker: no spec on stdin"},
		{name: "not JSON", in: "spec\n", err: "bench worker: bad spec line: invalid character 's' looking for beginning of value"},
		{name: "no server", in: `{"spec":{}}` + "\n", err: "bench: the spec names no server",
			out: `{"done":"spec","err":"bench: the spec names no server"}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := RunWorker(strings.NewReader(tt.in), &out); err == nil || err.Error() != tt.err {
				t.Errorf("error %v, want %q", err, tt.err)
			}
			if out.String() != tt.out {
				t.Errorf("wrote %q, want %q", out.String(), tt.out)
			}
		})
	}
}

// TestStartWorkerRefused: when a worker cannot run its spec, starting it
// fails with the worker's own reason.
func TestStartWorkerRefused(t *testing.T) {
	var stderr bytes.Buffer
	m, err := startWorker(Spec{}, &stderr)
	if want := "bench: worker failed to start: bench: the spec names no server"; err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	if m != nil {
		t.Errorf("got a member for a worker that did not start")
	}
}
