package preflight

// What one connection costs, measured; Costs in a Report carries them.
const (
	// serverConnBytes is the server's RSS per idle logged-in connection:
	// 674 B, the higher of the two final runs of docs/BENCHMARKS.md
	// "Memory per idle logged-in connection" (19,000 connections,
	// 2026-11-26; 659 B in the other, 589–601 B of it Go heap). The higher
	// one, because a host is sized on what it must not exceed.
	serverConnBytes = 674
	// serverBaseBytes is an empty server's RSS: six empty servers held
	// 118 MiB in all (docs/BENCHMARKS.md "connect: 100,000 connections,
	// six servers"), about 20 MiB each.
	serverBaseBytes = 20 << 20
	// kernelSocketBytes is the kernel memory of one idle TCP connection's
	// server end: its socket (the TCP slab), inode, file, dentry and epoll
	// registration, 4,057–4,266 B over two runs of three rounds of 4,000
	// loopback connections (medians 4,165 and 4,169 B), on 2 cores,
	// 24 GiB, Linux 6.18, 2026-12-04. An idle socket holds no buffer
	// memory (sockstat's TCP mem did not move). docs/BENCHMARKS.md
	// records the run; TestKernelCostPerConnection (build tag soak)
	// repeats it.
	kernelSocketBytes = 4170
	// filesPerConn is the descriptors one connection takes on the server:
	// its socket.
	filesPerConn = 1
	// fdHeadroom is gateway.Config.FDHeadroom's default (serve's
	// --fd-headroom), part of the reserve the gateway keeps besides
	// connections (gateway/filelimit.go).
	fdHeadroom = 64
	// bufferPagesPerConn: a connection with data queued holds at least one
	// page of tcp_mem, the unit the kernel accounts socket buffers in.
	bufferPagesPerConn = 1
)

// Costs is what one idle connection costs on the server's host, and what
// the gateway keeps besides connections. Its JSON field names are stable.
type Costs struct {
	ServerBytes     int64 `json:"server_bytes"`      // server RSS per idle logged-in connection
	ServerBaseBytes int64 `json:"server_base_bytes"` // RSS of an empty server
	KernelBytes     int64 `json:"kernel_bytes"`      // kernel memory per idle TCP connection (the server's end)
	FilesPerConn    int64 `json:"files_per_conn"`    // descriptors per connection on the server
	// OtherFiles are the descriptors the server holds besides connections:
	// 3 per event loop (one per core but one, at least one) and 11 more
	// (standard streams, the metrics listener, cgroup files, the
	// runtime's), plus the store's files (Facts.StoreFiles): 22 on a
	// fresh server on 2 cores, and 25 with --loops 2 (measured,
	// 2026-12-04).
	OtherFiles int64 `json:"other_files"`
	// ReserveFiles is what the gateway keeps free of connections:
	// OtherFiles + 64 (--fd-headroom) + OtherFiles/4, as
	// gateway/filelimit.go computes it.
	ReserveFiles int64 `json:"reserve_files"`
}

// costs returns the costs on a host with facts f.
func costs(f Facts) Costs {
	loops := max(1, int64(f.Cores)-1) // gateway.DefaultLoops
	other := 3*loops + 11 + f.StoreFiles
	return Costs{
		ServerBytes:     serverConnBytes,
		ServerBaseBytes: serverBaseBytes,
		KernelBytes:     kernelSocketBytes,
		FilesPerConn:    filesPerConn,
		OtherFiles:      other,
		ReserveFiles:    other + fdHeadroom + other/4,
	}
}
