package preflight

import "fmt"

// Scopes of a Limit: what it bounds.
const (
	ScopeProcess = "process"      // one server process's connections
	ScopeSystem  = "system"       // every process on the host together
	ScopeClient  = "client"       // a client's connections from one source address to one server address
	ScopeAccept  = "accept queue" // connections waiting to be accepted at once, not those held
	ScopeHost    = "host"         // no bound on connections; reported for sizing
)

// Limit is one setting that bounds connections, with what it allows and how
// to raise it. Its JSON field names are stable.
type Limit struct {
	// Name is a stable identifier: nofile_soft, nofile_hard, nr_open,
	// file_max, memory, tcp_mem, conntrack, ports, somaxconn,
	// syn_backlog, disk, cores.
	Name string `json:"name"`
	// Setting is the setting as an operator names it ("fs.file-max").
	Setting string `json:"setting"`
	Value   int64  `json:"value"`
	Unit    string `json:"unit"` // files, bytes, pages, entries, ports, connections, cores
	// Connections is how many connections the setting allows one server
	// process (for ScopeClient, one client source address), with the
	// costs of the Report; -1 when it does not bound how many are held.
	Connections int64  `json:"connections"`
	Scope       string `json:"scope"`
	// Binding is set on the one limit that allows the fewest connections
	// of those with scope process or system: the one that binds first.
	Binding bool   `json:"binding"`
	Note    string `json:"note"`
	// Raise holds the commands and configuration lines that raise it,
	// with the values to set; empty when it needs nothing or cannot be
	// raised by a setting.
	Raise []string `json:"raise"`
}

// Report is what this host can hold with its current settings. Its JSON
// field names are stable.
type Report struct {
	Facts  Facts   `json:"facts"`
	Costs  Costs   `json:"costs"`
	Limits []Limit `json:"limits"`
	// Connections is what one server process can hold: the binding
	// limit's.
	Connections int64 `json:"connections"`
	// Binding names the limit that binds first (Limit.Name).
	Binding string `json:"binding"`
	// Summary says, in a few sentences, what binds and what it implies.
	Summary string `json:"summary"`
}

// unlimited stands for RLIM_INFINITY, as the gateway reads it.
const unlimited = 1 << 30

// minAcceptQueue is what docs/OPERATIONS.md sets the accept-queue
// settings to (gnet's largest backlog): after a restart every client
// reconnects within the GOAWAY's window, and a SYN the full queue drops is
// resent only after a second, then after waits that double. Linux's
// default since 5.4, 4096, holds less than half a second of logins at
// --goaway-rate's 10,000 a second.
const minAcceptQueue = 65535

// sysctlFile is where the sysctl.d lines go.
const sysctlFile = "/etc/sysctl.d/60-switchboard.conf" // as docs/OPERATIONS.md names it

// NewReport computes, from facts f, what each limit allows, which binds
// first and how to raise each.
func NewReport(f Facts) Report {
	c := costs(f)
	r := Report{Facts: f, Costs: c}
	reserve := c.ReserveFiles
	files := func(n int64) int64 { return max(n-reserve, 0) }

	memConns := max((f.MemAvailable-c.ServerBaseBytes)/(c.ServerBytes+c.KernelBytes), 0)
	// want is the files that hold every connection memory allows: the value
	// each file limit is raised to, rounded up to a multiple of 1024.
	want := (memConns*c.FilesPerConn + reserve + 1023) / 1024 * 1024

	soft, hard := clampRlimit(f.NofileSoft), clampRlimit(f.NofileHard)
	nofileTarget := want
	// serve reads the limit when it starts (gateway/filelimit.go): each
	// of these takes effect at its next start.
	raiseNofile := []string{
		fmt.Sprintf("ulimit -Hn %d && ulimit -n %d   # in the shell that starts serve; needs root with CAP_SYS_RESOURCE", nofileTarget, nofileTarget),
		fmt.Sprintf("LimitNOFILE=%d   # systemd: the [Service] section of the unit", nofileTarget),
		fmt.Sprintf("echo '<user> soft nofile %d' >> /etc/security/limits.d/switchboard.conf; echo '<user> hard nofile %d' >> /etc/security/limits.d/switchboard.conf   # login sessions (pam_limits)", nofileTarget, nofileTarget),
		fmt.Sprintf("docker run --ulimit nofile=%d:%d ...   # a container", nofileTarget, nofileTarget),
	}
	if nofileTarget > f.NrOpen {
		raiseNofile = append(raiseNofile, fmt.Sprintf("(first raise fs.nr_open to %d: no process may have a higher limit)", nofileTarget))
	}

	softNote := fmt.Sprintf("one file per connection, besides a reserve of %d (%d files open besides connections, +%d headroom, +a quarter of them; it grows with the store); serve reads the limit when it starts",
		reserve, c.OtherFiles, fdHeadroom)
	// A limit that already holds every connection memory allows needs
	// nothing; a soft limit under the hard one is raised to it first.
	var softRaise, hardRaise []string
	if hard < want {
		hardRaise = raiseNofile
	}
	if soft < want {
		softRaise = hardRaise
		if soft < hard {
			softRaise = append([]string{fmt.Sprintf("ulimit -n %d   # up to the hard limit, no privilege needed", hard)}, hardRaise...)
		}
	}
	hardNote := "the highest soft limit a process may set itself"
	if !f.CanRaiseHard {
		hardNote += "; this process lacks CAP_SYS_RESOURCE, so it cannot be raised from here: only whoever starts the process (systemd, the container runtime) can"
	}

	r.Limits = []Limit{
		{Name: "nofile_soft", Setting: "RLIMIT_NOFILE soft (ulimit -n)", Value: int64(soft), Unit: "files",
			Connections: files(soft), Scope: ScopeProcess, Note: softNote, Raise: softRaise},
		{Name: "nofile_hard", Setting: "RLIMIT_NOFILE hard (ulimit -Hn)", Value: int64(hard), Unit: "files",
			Connections: files(hard), Scope: ScopeProcess, Note: hardNote, Raise: hardRaise},
		{Name: "nr_open", Setting: "fs.nr_open", Value: f.NrOpen, Unit: "files",
			Connections: files(f.NrOpen), Scope: ScopeProcess,
			Note:  "the highest open-file limit any process may have",
			Raise: sysctlRaise("fs.nr_open", f.NrOpen, want)},
		{Name: "file_max", Setting: "fs.file-max", Value: f.FileMax, Unit: "files",
			Connections: files(f.FileMax - f.FilesOpen), Scope: ScopeSystem,
			Note:  fmt.Sprintf("open files of every process together; %s are open now. A client on this host costs one more per connection (its end)", group(f.FilesOpen)),
			Raise: sysctlRaise("fs.file-max", f.FileMax, f.FilesOpen+want)},
		{Name: "memory", Setting: "MemAvailable (/proc/meminfo)", Value: f.MemAvailable, Unit: "bytes",
			Connections: memConns, Scope: ScopeSystem,
			Note: fmt.Sprintf("%d B server RSS + %s B kernel per idle connection, after %d MiB for an empty server; a connection that has exchanged messages costs ~2.8 KiB of server RSS",
				c.ServerBytes, group(c.KernelBytes), c.ServerBaseBytes>>20),
			Raise: []string{"more memory, or fewer other processes on the host"}},
		tcpMemLimit(f),
	}
	if f.Conntrack {
		r.Limits = append(r.Limits, Limit{Name: "conntrack", Setting: "net.netfilter.nf_conntrack_max", Value: f.ConntrackMax, Unit: "entries",
			Connections: max(f.ConntrackMax-f.ConntrackCount, 0), Scope: ScopeSystem,
			Note:  fmt.Sprintf("nf_conntrack is loaded: one entry per tracked connection (%s in use); it binds only if a firewall or NAT rule tracks this traffic, and a full table drops new connections. Raise it to twice the connections (docs/OPERATIONS.md): a closed connection's entry lingers while a reconnect takes a new one", group(f.ConntrackCount)),
			Raise: sysctlRaise("net.netfilter.nf_conntrack_max", f.ConntrackMax, f.ConntrackCount+2*want)})
	}
	ports := f.PortHigh - f.PortLow + 1
	r.Limits = append(r.Limits,
		Limit{Name: "ports", Setting: "net.ipv4.ip_local_port_range", Value: ports, Unit: "ports",
			Connections: ports, Scope: ScopeClient,
			Note: fmt.Sprintf("ports %d-%d: a client takes one per connection, so one source address reaches one server address with at most %s; the server's end takes none. A client on this host (the load generator) needs more source addresses (127.0.0.0/8) or servers beyond that",
				f.PortLow, f.PortHigh, group(ports)),
			Raise: portsRaise(f)},
		acceptLimit("somaxconn", "net.core.somaxconn", f.Somaxconn,
			"bounds the connections waiting for accept at once (gnet asks for somaxconn as each listener's backlog), not those held; past it a reconnect storm's SYNs are dropped and retried"),
		acceptLimit("syn_backlog", "net.ipv4.tcp_max_syn_backlog", f.SynBacklog,
			"bounds half-open connections (SYN received, handshake not done); past it the kernel answers with SYN cookies or drops"),
		migrateLimit(f.MigrateReq),
		diskLimit(f),
		Limit{Name: "cores", Setting: "cores", Value: int64(f.Cores), Unit: "cores", Connections: -1, Scope: ScopeHost,
			Note: "one event loop per core but one; the per-connection costs were measured on 2 cores"},
	)

	best := -1
	for i, l := range r.Limits {
		if l.Connections < 0 || (l.Scope != ScopeProcess && l.Scope != ScopeSystem) {
			continue
		}
		if best < 0 || l.Connections < r.Limits[best].Connections {
			best = i
		}
	}
	b := &r.Limits[best]
	b.Binding = true
	r.Binding, r.Connections = b.Name, b.Connections
	r.Summary = summary(r, memConns)
	return r
}

// summary says what binds and what it implies.
func summary(r Report, memConns int64) string {
	f, b := r.Facts, r.Limits[0]
	for _, l := range r.Limits {
		if l.Binding {
			b = l
		}
	}
	s := fmt.Sprintf("One server process can hold %s idle connections here: the %s of %s binds first.", group(r.Connections), b.Setting, value(b, f.PageSize))
	switch b.Name {
	case "nofile_soft", "nofile_hard":
		s += fmt.Sprintf(" That is the limit less a reserve of %d files the gateway keeps for the store, listeners and pollers; the reserve grows with the store, so the cap falls a little as it does.", r.Costs.ReserveFiles)
		switch {
		case b.Name == "nofile_soft" && f.NofileSoft < f.NofileHard:
			s += fmt.Sprintf(" `ulimit -n %d` raises it to the hard limit without privilege.", clampRlimit(f.NofileHard))
		case !f.CanRaiseHard:
			s += fmt.Sprintf(" The hard limit is the same and this process lacks CAP_SYS_RESOURCE, so it cannot be raised from here: more connections take several server processes (each with its own data folder, each holding %s) or a higher limit set by whoever starts the process (LimitNOFILE=, docker --ulimit).", group(r.Connections))
		default:
			s += " Raise the hard and soft limit together (commands below)."
		}
	case "memory":
		s += " Memory binds: more connections take more memory or another host."
	}
	if b.Name != "memory" {
		s += fmt.Sprintf(" Memory alone would allow %s.", group(memConns))
	}
	return s
}

// tcpMemLimit: tcp_mem bounds the buffer memory of all TCP sockets, in
// pages. An idle connection holds none; one with data queued holds at least
// a page, so tcp_mem's high mark is how many connections may each hold one
// at the same moment (a message to everyone) before the kernel refuses
// buffer memory and drops.
func tcpMemLimit(f Facts) Limit {
	m := f.TCPMemPages
	l := Limit{Name: "tcp_mem", Setting: "net.ipv4.tcp_mem", Value: m[2], Unit: "pages",
		Connections: m[2] / bufferPagesPerConn, Scope: ScopeSystem,
		Note: fmt.Sprintf("socket buffer memory of all TCP sockets, pages of %d B: %s low, %s pressure, %s high (%s). An idle connection holds none; the count is of connections holding one page of queued data at once. Per socket, tcp_rmem %d/%d/%d and tcp_wmem %d/%d/%d B (min/default/max)",
			f.PageSize, group(m[0]), group(m[1]), group(m[2]), size(m[2]*int64(f.PageSize)),
			f.TCPRmem[0], f.TCPRmem[1], f.TCPRmem[2], f.TCPWmem[0], f.TCPWmem[1], f.TCPWmem[2]),
	}
	v := fmt.Sprintf("%d %d %d", 2*m[0], 2*m[1], 2*m[2])
	l.Raise = []string{
		fmt.Sprintf("sysctl -w net.ipv4.tcp_mem=%q   # doubles it; the kernel's default is ~9%% of memory", v),
		fmt.Sprintf("echo 'net.ipv4.tcp_mem = %s' >> %s", v, sysctlFile),
	}
	return l
}

// acceptLimit reports a bound on a listener's queues.
func acceptLimit(name, setting string, v int64, note string) Limit {
	l := Limit{Name: name, Setting: setting, Value: v, Unit: "connections", Connections: -1, Scope: ScopeAccept, Note: note}
	if v < minAcceptQueue {
		l.Raise = sysctlRaise(setting, v, minAcceptQueue)
	} else {
		l.Note += fmt.Sprintf("; at least %d, enough", minAcceptQueue)
	}
	return l
}

// migrateLimit reports net.ipv4.tcp_migrate_req: during a takeover (serve
// --takeover) the old and the new process listen on the port together, and
// when the old listener closes, the connections waiting in its accept
// queue are reset unless the kernel moves them to the new one.
func migrateLimit(v int64) Limit {
	l := Limit{Name: "migrate_req", Setting: "net.ipv4.tcp_migrate_req", Value: v, Unit: "bool", Connections: -1, Scope: ScopeAccept,
		Note: "an upgrade by takeover closes the old process's listener while the new one listens; with 1 the connections waiting in its accept queue move to the new listener"}
	switch v {
	case -1:
		l.Note += "; this kernel (before 5.14) has no such setting: the few connections arriving as the old listener closes are reset, and their clients retry"
	case 0:
		l.Note += "; with 0 they are reset, and their clients retry"
		l.Raise = []string{"sysctl -w net.ipv4.tcp_migrate_req=1", fmt.Sprintf("echo 'net.ipv4.tcp_migrate_req = 1' >> %s", sysctlFile)}
	default:
		l.Note += "; set"
	}
	return l
}

// diskLimit reports the free disk where the data folder is: it bounds the
// messages stored, not the connections.
func diskLimit(f Facts) Limit {
	// serve's defaults: --min-free 256 MiB, and the 64 MiB reserve file it
	// creates in the data folder.
	const floor = (256 + 64) << 20
	l := Limit{Name: "disk", Setting: "free disk (" + f.DiskPath + ")", Value: f.DiskFree, Unit: "bytes", Connections: -1, Scope: ScopeHost,
		Note: fmt.Sprintf("bounds stored messages, not connections; serve refuses new messages below --min-free (256 MiB) and keeps a 64 MiB reserve file; %s free of %s",
			size(f.DiskFree), size(f.DiskTotal))}
	if f.DiskFree < floor {
		l.Note += "; BELOW what serve needs to accept messages"
		l.Raise = []string{"free space on " + f.DiskPath + ", or a data folder on a larger disk (--data)"}
	}
	return l
}

// portsRaise widens the ephemeral range to 1024–65535, the widest that
// leaves the privileged ports alone.
func portsRaise(f Facts) []string {
	if f.PortLow <= 1024 && f.PortHigh >= 65535 {
		return []string{"more source addresses for the client (each has its own range); the range is already the widest"}
	}
	return []string{
		`sysctl -w net.ipv4.ip_local_port_range="1024 65535"`,
		fmt.Sprintf("echo 'net.ipv4.ip_local_port_range = 1024 65535' >> %s", sysctlFile),
		"or more source addresses for the client: each has its own range",
	}
}

// sysctlRaise returns the commands that set a sysctl to want, or nothing
// when it is already at least that.
func sysctlRaise(key string, cur, want int64) []string {
	if cur >= want {
		return nil
	}
	return []string{
		fmt.Sprintf("sysctl -w %s=%d", key, want),
		fmt.Sprintf("echo '%s = %d' >> %s   # kept across reboots", key, want, sysctlFile),
	}
}

// clampRlimit reads RLIM_INFINITY and anything past 2^30 as 2^30, as the
// gateway does.
func clampRlimit(v uint64) int64 {
	if v > unlimited {
		return unlimited
	}
	return int64(v)
}
