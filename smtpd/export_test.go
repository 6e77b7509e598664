package smtpd

// SessionsInData counts sessions inside a DATA transfer, the ones a graceful
// shutdown waits for. Tests use it instead of sleeping: go-smtp writes the
// 354 before it calls Session.Data, so the client sees 354 first.
func (s *Server) SessionsInData() int {
	n := 0
	s.eachGate(func(g *gateListener) {
		g.mu.Lock()
		defer g.mu.Unlock()
		for c := range g.conns {
			if c.inData() {
				n++
			}
		}
	})
	return n
}
