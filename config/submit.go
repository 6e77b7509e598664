package config

import "path/filepath"

// DefaultSubmitSocket is where a running gateway takes mail from local users
// who may not write its spool, and where `plcmail send` run by such a user
// looks for it when it cannot read the configuration (which is private to
// root and the gateway's group). systemd's RuntimeDirectory=plcmail creates
// the directory; serve does not listen when it is missing.
const DefaultSubmitSocket = "/run/plcmail/submit.sock"

func (g *Gateway) validateSubmitSocket(v *validator) {
	if g.SubmitSocket == "" {
		return
	}
	if !filepath.IsAbs(g.SubmitSocket) {
		v.errf("gateway.submit_socket", "%q must be an absolute path (or \"\" to turn local submission off)", g.SubmitSocket)
	} else if len(g.SubmitSocket) > 100 {
		v.errf("gateway.submit_socket", "%q is %d bytes long; a Unix socket path is limited to about 100", g.SubmitSocket, len(g.SubmitSocket))
	}
}
