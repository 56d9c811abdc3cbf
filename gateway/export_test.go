package gateway

import "switchboard/delivery"

// LoopsInUse returns how many event loops have had a connection, for tests.
func (s *Server) LoopsInUse() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.loops)
}

// NewWithFileLimit is New under the open-file limit limit instead of the
// process's, for tests.
func NewWithFileLimit(cfg Config, r *delivery.Router, limit int) (*Server, error) {
	return newServer(cfg, r, limit)
}

// CountOpenFiles is Config.OpenFiles' default; ReadOpenFiles its fallback
// for kernels before 6.2, which read /proc/self/fd.
var CountOpenFiles, ReadOpenFiles = countOpenFiles, readOpenFiles

// SetPanicHook makes the server call h at each per-connection point
// ("open", "check", "close", "goaway"); h may panic.
func (s *Server) SetPanicHook(h func(point string, user uint64)) { s.panicHook.Store(&h) }
