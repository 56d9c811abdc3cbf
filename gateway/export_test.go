package gateway

// LoopsInUse returns how many event loops have had a connection, for tests.
func (s *Server) LoopsInUse() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.loops)
}
