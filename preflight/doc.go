// Package preflight tells how many connections this host can hold with its
// current settings, which limit binds first, and how to raise each:
// `switchboard preflight` prints its Report.
//
// A Probe reads the limits (Facts): the process's RLIMIT_NOFILE, soft and
// hard; fs.file-max, fs.nr_open and fs.file-nr; net.core.somaxconn and
// net.ipv4.tcp_max_syn_backlog; the ephemeral port range; tcp_mem (in
// pages), tcp_rmem and tcp_wmem; nf_conntrack_max when conntrack is
// loaded; MemAvailable; the free disk where the data folder is; the core
// count. It reads them under Probe.Root, "/" on a host and a fake tree in
// tests, and takes the open-file limit and statfs as functions for the
// same reason. With Probe.Syncs it also times that many durable writes on
// the data folder's disk, written as the server's in-flight log writes
// them (Facts.Sync): every ACCEPT follows one, so their p50 is the floor of
// a send's latency there.
//
// NewReport turns the facts into a Limit each, with the connections it
// allows one server process at the measured costs of an idle connection
// (costs.go, each figure with where it was measured):
//
//	open files (soft, hard, nr_open)   limit − reserve; one file per connection
//	fs.file-max                        file-max − files open now − reserve
//	memory                             (MemAvailable − 20 MiB) / (674 B server + 4,170 B kernel)
//	tcp_mem                            high mark in pages: connections holding a page of data at once
//	nf_conntrack_max                   max − entries in use
//
// The reserve is what the gateway keeps free of connections
// (gateway/filelimit.go): the files open besides connections, plus 64,
// plus a quarter of them, where the files open besides connections are 3
// per core, 10 more, and the store's (its folder and every file in it).
// The least of these binds first (Report.Binding). The ephemeral port
// range bounds a client's connections from one source address to one
// server address, not the server's; somaxconn and the SYN backlog bound
// connections waiting to be accepted, not those held; the disk bounds
// stored messages; none of those binds. Each limit's Raise holds the
// exact commands: `sysctl -w` and a line for /etc/sysctl.d/, `ulimit -n`,
// systemd's `LimitNOFILE=`, to the value that would hold every connection
// memory allows.
//
// # JSON
//
// WriteJSON writes the Report with stable field names:
//
//	connections   int     what one server process can hold: the binding limit's
//	binding       string  the name of the limit that binds first
//	summary       string  what binds and what it implies, in sentences
//	costs         object  server_bytes, server_base_bytes, kernel_bytes (bytes),
//	                      files_per_conn, other_files, reserve_files (descriptors)
//	limits        array   of objects: name, setting, value, unit, connections
//	                      (-1: does not bound how many are held), scope
//	                      (process, system, client, accept queue, host),
//	                      binding (bool), note, raise (array of strings)
//	facts         object  what was read: nofile_soft, nofile_hard, can_raise_hard,
//	                      file_max, nr_open, files_open, somaxconn, syn_backlog,
//	                      tcp_migrate_req (-1: the kernel has none),
//	                      port_low, port_high, tcp_mem_pages [3], tcp_rmem [3],
//	                      tcp_wmem [3], conntrack, conntrack_max, conntrack_count,
//	                      mem_total, mem_available, disk_free, disk_total (bytes),
//	                      disk_path, store_files, cores, page_size (bytes),
//	                      sync (object, when timed: count, record_bytes,
//	                      p50_us, p99_us, max_us, cpu_us: durable writes on
//	                      the data folder's disk, Sync)
//
// Limit names: nofile_soft, nofile_hard, nr_open, file_max, memory,
// tcp_mem, conntrack (only when loaded), ports, somaxconn, syn_backlog,
// migrate_req, disk, cores, in that order.
package preflight
