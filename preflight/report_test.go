package preflight

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// hostFiles is a fake /proc of a host like the one the figures were taken
// on: 8 GiB available, conntrack loaded, CAP_SYS_RESOURCE missing (CapEff
// without bit 24).
func hostFiles() map[string]string {
	return map[string]string{
		"proc/sys/fs/file-max":                      "2466286\n",
		"proc/sys/fs/nr_open":                       "1048576\n",
		"proc/sys/fs/file-nr":                       "464\t0\t2466286\n",
		"proc/sys/net/core/somaxconn":               "4096\n",
		"proc/sys/net/ipv4/tcp_max_syn_backlog":     "2048\n",
		"proc/sys/net/ipv4/tcp_migrate_req":         "0\n",
		"proc/sys/net/ipv4/ip_local_port_range":     "32768\t60999\n",
		"proc/sys/net/ipv4/tcp_mem":                 "287913\t383885\t575826\n",
		"proc/sys/net/ipv4/tcp_rmem":                "4096\t131072\t33554432\n",
		"proc/sys/net/ipv4/tcp_wmem":                "4096\t16384\t4194304\n",
		"proc/sys/net/netfilter/nf_conntrack_max":   "262144\n",
		"proc/sys/net/netfilter/nf_conntrack_count": "0\n",
		"proc/meminfo":                              "MemTotal:       24683756 kB\nMemFree:        24263888 kB\nMemAvailable:    8388608 kB\nSlab:             123456 kB\n",
		"proc/self/status":                          "Name:\tswitchboard\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\n",
	}
}

// writeTree writes files under a new folder and returns it.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// fakeProbe probes files with the given open-file limits, 2 cores, 4 KiB
// pages and 70 GiB free of 250 GiB.
func fakeProbe(t *testing.T, files map[string]string, soft, hard uint64) Probe {
	return Probe{
		Root:     writeTree(t, files),
		Data:     filepath.Join(t.TempDir(), "data"),
		Rlimit:   func() (uint64, uint64, error) { return soft, hard, nil },
		Statfs:   func(string) (uint64, uint64, error) { return 70 << 30, 250 << 30, nil },
		Cores:    2,
		PageSize: 4096,
	}
}

func limitNamed(t *testing.T, r Report, name string) Limit {
	t.Helper()
	for _, l := range r.Limits {
		if l.Name == name {
			return l
		}
	}
	t.Fatalf("no limit %q in %v", name, r.Limits)
	return Limit{}
}

func TestReportFakeHosts(t *testing.T) {
	// With 8 GiB available, memory holds (8 GiB − 20 MiB) / (674 + 4,170 B)
	// = 1,768,984 connections; with the reserve of 91 files, rounded up to
	// a multiple of 1024, that is 1,769,472 files: the value every file
	// limit is raised to.
	tests := []struct {
		name       string
		edit       func(m map[string]string)
		soft, hard uint64
		binding    string
		conns      int64
		raise      []string // lines the binding limit's Raise must hold
		noRaise    []string // limits that need no raise
		summary    string   // a phrase the summary must hold
	}{
		{
			name: "the 20,000 open-file limit of this machine",
			soft: 20000, hard: 20000,
			binding: "nofile_soft", conns: 20000 - 91,
			raise: []string{
				"LimitNOFILE=1769472   # systemd: the [Service] section of the unit",
				"ulimit -Hn 1769472 && ulimit -n 1769472   # in the shell that starts serve; needs root with CAP_SYS_RESOURCE",
				"(first raise fs.nr_open to 1769472: no process may have a higher limit)",
			},
			summary: "cannot be raised from here: more connections take several server processes",
		},
		{
			name: "soft under hard",
			soft: 1024, hard: 524288,
			binding: "nofile_soft", conns: 1024 - 91,
			raise:   []string{"ulimit -n 524288   # up to the hard limit, no privilege needed"},
			summary: "`ulimit -n 524288` raises it to the hard limit without privilege",
		},
		{
			name: "memory",
			edit: func(m map[string]string) {
				m["proc/meminfo"] = "MemTotal: 131072 kB\nMemAvailable: 65536 kB\n"
			},
			soft: 1048576, hard: 1048576,
			binding: "memory", conns: 9524, // (64 MiB − 20 MiB) / 4,844 B
			raise: []string{"more memory, or fewer other processes on the host"},
			// 9,524 connections and the reserve fit 10,240 files.
			noRaise: []string{"nofile_soft", "nofile_hard", "nr_open", "file_max", "conntrack"},
			summary: "Memory binds",
		},
		{
			name: "the system's open files",
			edit: func(m map[string]string) {
				m["proc/sys/fs/file-max"] = "50000\n"
				m["proc/sys/fs/file-nr"] = "40000\t0\t50000\n"
			},
			soft: 1048576, hard: 1048576,
			binding: "file_max", conns: 10000 - 91,
			raise: []string{
				"sysctl -w fs.file-max=1809472",
				"echo 'fs.file-max = 1809472' >> /etc/sysctl.d/60-switchboard.conf   # kept across reboots",
			},
		},
		{
			name: "conntrack",
			edit: func(m map[string]string) {
				m["proc/sys/net/netfilter/nf_conntrack_max"] = "16384\n"
				m["proc/sys/net/netfilter/nf_conntrack_count"] = "1000\n"
			},
			soft: 1048576, hard: 1048576,
			binding: "conntrack", conns: 15384,
			raise: []string{"sysctl -w net.netfilter.nf_conntrack_max=3539944"},
		},
		{
			name: "unlimited open files: tcp_mem",
			edit: func(m map[string]string) {
				m["proc/sys/net/ipv4/tcp_mem"] = "1000 2000 3000\n"
			},
			soft: unix.RLIM_INFINITY, hard: unix.RLIM_INFINITY,
			binding: "tcp_mem", conns: 3000,
			raise: []string{`sysctl -w net.ipv4.tcp_mem="2000 4000 6000"   # doubles it; the kernel's default is ~9% of memory`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := hostFiles()
			if tc.edit != nil {
				tc.edit(files)
			}
			f, err := fakeProbe(t, files, tc.soft, tc.hard).Read()
			if err != nil {
				t.Fatal(err)
			}
			r := NewReport(f)
			if r.Binding != tc.binding || r.Connections != tc.conns {
				t.Fatalf("binds %s at %d, want %s at %d", r.Binding, r.Connections, tc.binding, tc.conns)
			}
			var bound []string
			for _, l := range r.Limits {
				if l.Binding {
					bound = append(bound, l.Name)
				}
			}
			if !slices.Equal(bound, []string{tc.binding}) {
				t.Errorf("limits marked binding: %v, want [%s]", bound, tc.binding)
			}
			b := limitNamed(t, r, tc.binding)
			for _, line := range tc.raise {
				if !slices.Contains(b.Raise, line) {
					t.Errorf("%s.Raise lacks %q; has:\n%s", b.Name, line, strings.Join(b.Raise, "\n"))
				}
			}
			for _, name := range tc.noRaise {
				if l := limitNamed(t, r, name); l.Raise != nil {
					t.Errorf("%s (%d) needs no raise, got %q", name, l.Value, l.Raise)
				}
			}
			if !strings.Contains(r.Summary, tc.summary) {
				t.Errorf("summary lacks %q: %s", tc.summary, r.Summary)
			}
		})
	}
}

// TestReportThisMachine checks every figure of the report on a fake copy of
// this machine: the limits in order, what each allows, and that only the
// limits of a server process or the system can bind.
func TestReportThisMachine(t *testing.T) {
	f, err := fakeProbe(t, hostFiles(), 20000, 20000).Read()
	if err != nil {
		t.Fatal(err)
	}
	r := NewReport(f)
	want := []struct {
		name  string
		value int64
		conns int64
		scope string
	}{
		{"nofile_soft", 20000, 19909, ScopeProcess},
		{"nofile_hard", 20000, 19909, ScopeProcess},
		{"nr_open", 1048576, 1048485, ScopeProcess},
		{"file_max", 2466286, 2466286 - 464 - 91, ScopeSystem},
		{"memory", 8 << 30, 1768984, ScopeSystem},
		{"tcp_mem", 575826, 575826, ScopeSystem},
		{"conntrack", 262144, 262144, ScopeSystem},
		{"ports", 28232, 28232, ScopeClient},
		{"somaxconn", 4096, -1, ScopeAccept},
		{"syn_backlog", 2048, -1, ScopeAccept},
		{"migrate_req", 0, -1, ScopeAccept},
		{"disk", 70 << 30, -1, ScopeHost},
		{"cores", 2, -1, ScopeHost},
	}
	if len(r.Limits) != len(want) {
		t.Fatalf("%d limits, want %d", len(r.Limits), len(want))
	}
	for i, w := range want {
		l := r.Limits[i]
		if l.Name != w.name || l.Value != w.value || l.Connections != w.conns || l.Scope != w.scope {
			t.Errorf("limit %d = %s %d → %d (%s), want %s %d → %d (%s)",
				i, l.Name, l.Value, l.Connections, l.Scope, w.name, w.value, w.conns, w.scope)
		}
	}
	c := r.Costs
	if c.OtherFiles != 22 || c.ReserveFiles != 91 || c.ServerBytes != 674 || c.KernelBytes != 4170 || c.FilesPerConn != 1 {
		t.Errorf("costs %+v, want 22 other files, a reserve of 91, 674 B + 4,170 B and 1 file a connection", c)
	}
	if got := limitNamed(t, r, "somaxconn").Raise; !slices.Contains(got, "sysctl -w net.core.somaxconn=65535") {
		t.Errorf("somaxconn 4096: raise %q, want OPERATIONS.md's 65535", got)
	}
	if got := limitNamed(t, r, "syn_backlog").Raise; !slices.Contains(got, "sysctl -w net.ipv4.tcp_max_syn_backlog=65535") {
		t.Errorf("syn_backlog 2048: raise %q, want OPERATIONS.md's 65535", got)
	}
	if got := limitNamed(t, r, "migrate_req").Raise; !slices.Contains(got, "sysctl -w net.ipv4.tcp_migrate_req=1") {
		t.Errorf("migrate_req 0: raise %q, want sysctl -w net.ipv4.tcp_migrate_req=1", got)
	}
	if got := limitNamed(t, r, "ports").Raise; !slices.Contains(got, `sysctl -w net.ipv4.ip_local_port_range="1024 65535"`) {
		t.Errorf("ports raise %q", got)
	}
	if n := limitNamed(t, r, "ports").Note; !strings.Contains(n, "one source address reaches one server address with at most 28,232") {
		t.Errorf("ports note does not say what the range bounds: %s", n)
	}
	if !strings.Contains(limitNamed(t, r, "nofile_hard").Note, "lacks CAP_SYS_RESOURCE") {
		t.Errorf("nofile_hard note does not say the hard limit cannot be raised here")
	}
}

// TestStoreFilesInReserve: the store's open files count into the reserve,
// so a grown store lowers what the open-file limit allows; a folder inside
// the store counts for nothing.
func TestStoreFilesInReserve(t *testing.T) {
	p := fakeProbe(t, hostFiles(), 20000, 20000)
	store := filepath.Join(p.Data, "mailboxes")
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	// A stopped store: 8 tables, 2 value logs, MANIFEST, KEYREGISTRY,
	// DISCARD; no memtable file (one more when it runs).
	names := []string{"MANIFEST", "KEYREGISTRY", "DISCARD", "000001.vlog", "000002.vlog"}
	for i := range 8 {
		names = append(names, fmt.Sprintf("%06d.sst", i+1))
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(store, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A folder inside is no file the store holds open.
	if err := os.Mkdir(filepath.Join(store, "backup"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	// 13 files + the folder + a memtable file + 2 in-flight log segments =
	// 17; other = 3×1 (one loop on 2 cores) + 11 + 17 = 31; reserve = 31 +
	// 64 + 7 = 102.
	if f.StoreFiles != 17 {
		t.Fatalf("StoreFiles = %d, want 17", f.StoreFiles)
	}
	if r := NewReport(f); r.Costs.ReserveFiles != 102 || r.Connections != 20000-102 {
		t.Fatalf("reserve %d, connections %d; want 102 and %d", r.Costs.ReserveFiles, r.Connections, 20000-102)
	}
}

func TestProbeErrors(t *testing.T) {
	files := hostFiles()
	delete(files, "proc/sys/fs/nr_open")
	files["proc/sys/net/ipv4/ip_local_port_range"] = "32768\n"
	p := fakeProbe(t, files, 20000, 20000)
	p.Rlimit = func() (uint64, uint64, error) { return 0, 0, unix.EPERM }
	_, err := p.Read()
	for _, want := range []string{"nr_open", "ip_local_port_range: 1 values, want 2", "RLIMIT_NOFILE"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %q", err, want)
		}
	}
	if !errors.Is(err, unix.EPERM) {
		t.Errorf("error %v does not wrap getrlimit's", err)
	}

	// Without conntrack the probe reads the rest and reports no conntrack limit.
	files = hostFiles()
	delete(files, "proc/sys/net/netfilter/nf_conntrack_max")
	delete(files, "proc/sys/net/netfilter/nf_conntrack_count")
	f, err := fakeProbe(t, files, 20000, 20000).Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range NewReport(f).Limits {
		if l.Name == "conntrack" {
			t.Errorf("a conntrack limit without nf_conntrack: %+v", l)
		}
	}
}

// TestJSONShape pins the JSON field names, which scripts depend on.
func TestJSONShape(t *testing.T) {
	f, err := fakeProbe(t, hostFiles(), 20000, 20000).Read()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, NewReport(f)); err != nil {
		t.Fatal(err)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	keysOf := func(raw json.RawMessage) []string {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	check := func(what string, got, want []string) {
		t.Helper()
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s keys %v, want %v", what, got, want)
		}
	}
	check("report", keysOf(buf.Bytes()), []string{"facts", "costs", "limits", "connections", "binding", "summary"})
	check("facts", keysOf(got["facts"]), []string{"nofile_soft", "nofile_hard", "can_raise_hard", "file_max", "nr_open",
		"files_open", "somaxconn", "syn_backlog", "tcp_migrate_req", "port_low", "port_high", "tcp_mem_pages", "tcp_rmem", "tcp_wmem",
		"conntrack", "conntrack_max", "conntrack_count", "mem_total", "mem_available", "disk_free", "disk_total",
		"disk_path", "store_files", "cores", "page_size"})
	check("costs", keysOf(got["costs"]), []string{"server_bytes", "server_base_bytes", "kernel_bytes", "files_per_conn",
		"other_files", "reserve_files"})
	var limits []json.RawMessage
	if err := json.Unmarshal(got["limits"], &limits); err != nil {
		t.Fatal(err)
	}
	check("limit", keysOf(limits[0]), []string{"name", "setting", "value", "unit", "connections", "scope", "binding", "note", "raise"})

	var r struct {
		Connections int64  `json:"connections"`
		Binding     string `json:"binding"`
		Facts       struct {
			NofileSoft  uint64   `json:"nofile_soft"`
			TCPMemPages [3]int64 `json:"tcp_mem_pages"`
		} `json:"facts"`
	}
	if err := json.Unmarshal(buf.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Connections != 19909 || r.Binding != "nofile_soft" || r.Facts.NofileSoft != 20000 || r.Facts.TCPMemPages != [3]int64{287913, 383885, 575826} {
		t.Errorf("JSON values %+v", r)
	}
}

func TestWriteText(t *testing.T) {
	f, err := fakeProbe(t, hostFiles(), 20000, 20000).Read()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, NewReport(f)); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "limit ") || !strings.Contains(lines[1], "RLIMIT_NOFILE soft") ||
		!strings.Contains(lines[1], "20,000 files") || !strings.Contains(lines[1], "19,909") ||
		!strings.HasSuffix(strings.TrimSpace(lines[1]), "<- binds first") {
		t.Errorf("table starts\n%s\n%s", lines[0], lines[1])
	}
	if n := strings.Count(out, "<- binds first"); n != 1 {
		t.Errorf("%d limits marked as binding, want 1", n)
	}
	for _, want := range []string{
		"One server process can hold 19,909 idle connections here: the RLIMIT_NOFILE soft (ulimit\n-n) of 20,000 files binds first.",
		"\n    LimitNOFILE=1769472   # systemd: the [Service] section of the unit\n",
		"\n    sysctl -w fs.nr_open=1769472\n",
		"575,826 pages (2.2 GiB)  575,826",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	for i, l := range lines {
		if len(l) > textWidth && !strings.HasPrefix(l, "    ") && i > len(NewReport(f).Limits) {
			t.Errorf("prose line %d is %d wide: %q", i, len(l), l)
		}
	}
}

// TestProbeThisHost probes the real machine: the open-file figure is the
// process's own limit, and the kernel's settings read as numbers.
func TestProbeThisHost(t *testing.T) {
	f, err := Probe{Data: filepath.Join(t.TempDir(), "data")}.Read()
	if err != nil {
		t.Fatal(err)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if f.NofileSoft != lim.Cur || f.NofileHard != lim.Max {
		t.Errorf("nofile %d/%d, getrlimit says %d/%d", f.NofileSoft, f.NofileHard, lim.Cur, lim.Max)
	}
	if f.FileMax <= 0 || f.NrOpen <= 0 || f.PortHigh <= f.PortLow || f.TCPMemPages[2] <= 0 || f.MemAvailable <= 0 || f.DiskTotal <= 0 {
		t.Errorf("implausible facts: %+v", f)
	}
	r := NewReport(f)
	if want := clampRlimit(lim.Cur) - r.Costs.ReserveFiles; r.Binding == "nofile_soft" && r.Connections != want {
		t.Errorf("nofile binds at %d, want %d", r.Connections, want)
	}
	t.Logf("%s", r.Summary)
}

// TestMigrateReqAbsent: a kernel without tcp_migrate_req (before 5.14) is
// no error: the fact is -1, and the note says what happens without it.
func TestMigrateReqAbsent(t *testing.T) {
	files := hostFiles()
	delete(files, "proc/sys/net/ipv4/tcp_migrate_req")
	f, err := fakeProbe(t, files, 20000, 20000).Read()
	if err != nil {
		t.Fatal(err)
	}
	if f.MigrateReq != -1 {
		t.Fatalf("MigrateReq %d, want -1", f.MigrateReq)
	}
	if l := limitNamed(t, NewReport(f), "migrate_req"); l.Raise != nil || !strings.Contains(l.Note, "before 5.14") {
		t.Fatalf("migrate_req without the setting: raise %q, note %q", l.Raise, l.Note)
	}
}

// TestAdviceMatchesOperations: preflight raises the accept queues to the
// values docs/OPERATIONS.md sets, so an operator following either gets the
// same host.
func TestAdviceMatchesOperations(t *testing.T) {
	doc, err := os.ReadFile("../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog"} {
		if line := fmt.Sprintf("%s = %d\n", key, minAcceptQueue); !strings.Contains(string(doc), line) {
			t.Errorf("OPERATIONS.md lacks %q, preflight's value", strings.TrimSpace(line))
		}
	}
}
