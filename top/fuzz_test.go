package top

import (
	"testing"
	"time"
)

// FuzzFrame: whatever a server's /metrics answers, two scrapes of it make
// a frame, with a cluster's sums, that renders, never a panic: counters
// that go backwards, histograms whose buckets shrink, NaN and infinities
// included.
func FuzzFrame(f *testing.F) {
	f.Add("switchboard_connections 10\n", "switchboard_connections 12\n")
	f.Add("switchboard_send_accept_seconds_bucket{le=\"0.001\"} 5\nswitchboard_send_accept_seconds_bucket{le=\"+Inf\"} 9\nswitchboard_send_accept_seconds_count 9\nswitchboard_send_accept_seconds_sum 1\n# TYPE switchboard_send_accept_seconds histogram\n",
		"# TYPE switchboard_send_accept_seconds histogram\nswitchboard_send_accept_seconds_bucket{le=\"0.001\"} 2\nswitchboard_send_accept_seconds_bucket{le=\"+Inf\"} 1\nswitchboard_send_accept_seconds_count 1\nswitchboard_send_accept_seconds_sum NaN\n")
	f.Add("process_cpu_seconds_total +Inf\n", "process_cpu_seconds_total -3\n")
	f.Fuzz(func(t *testing.T, before, after string) {
		t0 := time.Unix(1_800_000_000, 0)
		prev := []Sample{newSample("a:9070", t0, before), newSample("b:9070", t0, after)}
		cur := []Sample{newSample("a:9070", t0.Add(time.Second), after), newSample("b:9070", t0.Add(time.Second), before)}
		fr := NewFrame(prev, cur, time.Second)
		if len(fr.Servers) != 2 {
			t.Fatalf("%d servers in the frame, want 2", len(fr.Servers))
		}
		_ = fr.Render(Colours())
		_ = NewFrame(nil, cur, time.Second).Render(Colours())
	})
}
