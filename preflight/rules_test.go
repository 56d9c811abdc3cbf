package preflight

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
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

// Each setting that cannot be read or parsed is an error naming it, not a
// zero figure in the report; so is a disk or a store that cannot be read,
// and a durable write that fails.
func TestProbeErrorsNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(files map[string]string, p *Probe)
		want string
	}{
		{"tcp_mem missing", func(f map[string]string, _ *Probe) { delete(f, "proc/sys/net/ipv4/tcp_mem") }, "tcp_mem"},
		{"tcp_rmem not a number", func(f map[string]string, _ *Probe) { f["proc/sys/net/ipv4/tcp_rmem"] = "4096 x 33554432\n" }, "/proc/sys/net/ipv4/tcp_rmem: strconv.ParseInt"},
		{"meminfo missing", func(f map[string]string, _ *Probe) { delete(f, "proc/meminfo") }, "meminfo"},
		{"meminfo without MemTotal", func(f map[string]string, _ *Probe) { f["proc/meminfo"] = "MemAvailable: 8388608 kB\n" }, "no MemTotal"},
		{"status missing", func(f map[string]string, _ *Probe) { delete(f, "proc/self/status") }, "status"},
		{"status without CapEff", func(f map[string]string, _ *Probe) { f["proc/self/status"] = "Name:\tswitchboard\n" }, "no CapEff line"},
		{"CapEff not hex", func(f map[string]string, _ *Probe) { f["proc/self/status"] = "CapEff:\tnone\n" }, "status CapEff"},
		{"statfs fails", func(_ map[string]string, p *Probe) {
			p.Statfs = func(string) (uint64, uint64, error) { return 0, 0, unix.EACCES }
		}, "free disk of"},
		{"the store unreadable", func(_ map[string]string, p *Probe) {
			if err := os.MkdirAll(p.Data, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(p.Data, "mailboxes"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "counting the store's files"},
		{"a durable write fails", func(_ map[string]string, p *Probe) {
			p.Data, p.Syncs = filepath.Join(t.TempDir(), "data"), 1
			if err := os.WriteFile(p.Data, nil, 0o644); err != nil { // a file where the folder should be
				t.Fatal(err)
			}
		}, "a durable write in"},
	} {
		files := hostFiles()
		p := fakeProbe(t, files, 20000, 20000)
		tc.edit(files, &p)
		p.Root = writeTree(t, files)
		if _, err := p.Read(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// Lines of /proc/meminfo without a colon, a value or a number are skipped,
// not an error nor a panic: the figures on the other lines are read.
func TestMeminfoOddLines(t *testing.T) {
	files := hostFiles()
	files["proc/meminfo"] = "MemTotal: 2048 kB\nno colon here\nHugePages_Odd:\nDirectMap: n/a\nMemAvailable: 1024 kB\n"
	f, err := fakeProbe(t, files, 20000, 20000).Read()
	if err != nil || f.MemTotal != 2048<<10 || f.MemAvailable != 1024<<10 {
		t.Fatalf("MemTotal %d, MemAvailable %d (%v); want %d and %d", f.MemTotal, f.MemAvailable, err, 2048<<10, 1024<<10)
	}
}

// A Probe's zero Data, Cores and PageSize mean the folder "data" under
// the working directory (its disk and its store), this machine's cores and
// its page size.
func TestProbeDefaults(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.MkdirAll(filepath.Join("data", "mailboxes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("data", "mailboxes", "000001.mem"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := fakeProbe(t, hostFiles(), 20000, 20000)
	p.Data, p.Cores, p.PageSize = "", 0, 0
	f, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	// The folder, the memtable file and 2 in-flight log segments.
	if f.DiskPath != filepath.Join(dir, "data") || f.StoreFiles != 1+1+inflightFiles {
		t.Errorf("disk %s, store files %d; want %s and %d", f.DiskPath, f.StoreFiles, filepath.Join(dir, "data"), 1+1+inflightFiles)
	}
	if f.Cores != runtime.NumCPU() || f.PageSize != os.Getpagesize() {
		t.Errorf("cores %d, page size %d; want %d and %d", f.Cores, f.PageSize, runtime.NumCPU(), os.Getpagesize())
	}
}
