package preflight

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// reportOf reads files with the given open-file limits and makes the report.
func reportOf(t *testing.T, files map[string]string, soft, hard uint64, edit func(*Probe)) Report {
	t.Helper()
	p := fakeProbe(t, files, soft, hard)
	if edit != nil {
		edit(&p)
	}
	f, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	return NewReport(f)
}

// A soft limit already at the hard one gets no `ulimit -n` to the hard
// limit: that would change nothing.
func TestSoftAtHardNoUlimitToHard(t *testing.T) {
	r := reportOf(t, hostFiles(), 20000, 20000, nil)
	for _, line := range limitNamed(t, r, "nofile_soft").Raise {
		if strings.Contains(line, "up to the hard limit") {
			t.Errorf("soft = hard = 20000, yet the advice says %q", line)
		}
	}
}

// The ephemeral range is widened unless it already spans 1024-65535: a
// range that reaches 65535 but starts at 32768 is not the widest.
func TestPortsRaise(t *testing.T) {
	for rng, widen := range map[string]bool{"32768 65535\n": true, "1024 60999\n": true, "1024 65535\n": false} {
		files := hostFiles()
		files["proc/sys/net/ipv4/ip_local_port_range"] = rng
		raise := limitNamed(t, reportOf(t, files, 20000, 20000, nil), "ports").Raise
		if got := slices.Contains(raise, `sysctl -w net.ipv4.ip_local_port_range="1024 65535"`); got != widen {
			t.Errorf("range %q: raise %q; want widening %v", strings.TrimSpace(rng), raise, widen)
		}
	}
}

// Only a limit of the server process or of the system binds: a narrow
// ephemeral range bounds a client's connections, never the server's
// (docs/OPERATIONS.md).
func TestPortsNeverBind(t *testing.T) {
	files := hostFiles()
	files["proc/sys/net/ipv4/ip_local_port_range"] = "60000 60999\n"
	r := reportOf(t, files, 1048576, 1048576, nil)
	if r.Binding != "conntrack" || r.Connections != 262144 {
		t.Errorf("binds %s at %d; want conntrack at 262,144, not the 1,000 client ports", r.Binding, r.Connections)
	}
}

// A disk under serve's floor (--min-free 256 MiB and its 64 MiB reserve
// file) is called out, with what to do; one above it is not.
func TestDiskBelowServesFloor(t *testing.T) {
	for free, below := range map[uint64]bool{300 << 20: true, 319 << 20: true, 320 << 20: false, 70 << 30: false} {
		l := limitNamed(t, reportOf(t, hostFiles(), 20000, 20000, func(p *Probe) {
			p.Statfs = func(string) (uint64, uint64, error) { return free, 250 << 30, nil }
		}), "disk")
		if got := strings.Contains(l.Note, "BELOW what serve needs"); got != below || (len(l.Raise) > 0) != below {
			t.Errorf("%d MiB free: note %q, raise %q; want the warning %v", free>>20, l.Note, l.Raise, below)
		}
	}
}

// An unlimited open-file limit reads as 2^30, as the gateway reads it.
func TestUnlimitedOpenFiles(t *testing.T) {
	l := limitNamed(t, reportOf(t, hostFiles(), unix.RLIM_INFINITY, unix.RLIM_INFINITY, nil), "nofile_soft")
	if l.Value != 1<<30 || l.Connections != 1<<30-91 {
		t.Errorf("unlimited: value %d, connections %d; want 2^30 and 2^30 − 91", l.Value, l.Connections)
	}
}

// When a file limit binds, the summary still says what memory would allow,
// and tcp_mem's note gives its high mark in bytes as well as pages.
func TestSummaryAndTCPMemNote(t *testing.T) {
	r := reportOf(t, hostFiles(), 20000, 20000, nil)
	if !strings.Contains(r.Summary, "Memory alone would allow 1,768,984.") {
		t.Errorf("summary lacks what memory allows: %s", r.Summary)
	}
	if n := limitNamed(t, r, "tcp_mem").Note; !strings.Contains(n, "575,826 high (2.2 GiB)") {
		t.Errorf("tcp_mem note lacks the high mark in bytes: %s", n)
	}
}

// A limit that allows no connection shows 0 in the table, not "-" (which
// means the setting does not bound connections).
func TestTableShowsZero(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteText(&buf, reportOf(t, hostFiles(), 50, 50, nil)); err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(buf.String(), "\n") {
		if strings.HasPrefix(l, "RLIMIT_NOFILE soft") {
			fields := strings.Fields(l)
			if i := slices.Index(fields, ScopeProcess); i < 1 || fields[i-1] != "0" {
				t.Errorf("a soft limit of 50 under a reserve of 91: %q, want 0 connections", l)
			}
			return
		}
	}
	t.Fatalf("no RLIMIT_NOFILE soft line:\n%s", buf.String())
}

// The disk is called slow by its p50, the floor of every send's latency,
// not by a tail.
func TestSlowSyncByP50(t *testing.T) {
	if s := syncText(&Sync{Count: 200, Bytes: 600, P50: 1000, P99: 5000, Max: 9000, CPU: 50}, "/data"); strings.Contains(s, "slow") {
		t.Errorf("a 1 ms p50 called slow for its 5 ms p99: %s", s)
	}
}

// A kernel without MemAvailable (before 3.14) is an error, not a host with
// no memory.
func TestMeminfoWithoutMemAvailable(t *testing.T) {
	files := hostFiles()
	files["proc/meminfo"] = "MemTotal:       24683756 kB\nMemFree:        24263888 kB\n"
	if _, err := fakeProbe(t, files, 20000, 20000).Read(); err == nil || !strings.Contains(err.Error(), "MemAvailable") {
		t.Errorf("meminfo without MemAvailable: %v, want an error naming it", err)
	}
}

// The CPU of a durable write is per write: at most the probe's wall time
// shared among its writes (a thread uses no more CPU than time passes).
func TestProbeSyncCPUPerWrite(t *testing.T) {
	const n = 100
	start := time.Now()
	s, err := probeSync(t.TempDir(), n)
	wall := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if perWrite := float64(wall.Microseconds()) / n; s.CPU > perWrite {
		t.Errorf("CPU %.1f µs a write, over the %.1f µs of wall time each had", s.CPU, perWrite)
	}
}
