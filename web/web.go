// Package web is the gateway's monitoring listener: Prometheus metrics on
// /metrics and a read-only status page on /, both from the same snapshot
// `plcmail status` prints. It changes nothing in the gateway: every path
// answers GET and HEAD only.
package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/plcmail/plcmail/bridge"
	"github.com/plcmail/plcmail/channel"
	"github.com/plcmail/plcmail/modbus"
	"github.com/plcmail/plcmail/spool"
)

// Status is what the listener shows: the links, the delivery loop and the
// spool of the running gateway.
type Status struct {
	Version, Commit, GoVersion string
	PID                        int
	Config                     string
	Started, Now               time.Time

	Links []bridge.LinkStatus
	Queue spool.Stats
	// Spooled and SpooledOldest count the message files in the spool,
	// which includes mail queued by other processes since the last scan.
	Spooled       int
	SpooledOldest time.Time
	Dead, Corrupt int
	SMTP          []string // listen addresses of the SMTP listener
	// Modbus are the polled devices (modbus.go).
	Modbus []modbus.DeviceStatus
	// Channels are the fallback channels ([[channel]]), in order.
	Channels []channel.Stats
}

// Waiting is the number of messages waiting, as `plcmail status` counts
// them: the spool directory has the last word over the loop's count.
func (s *Status) Waiting() int { return max(s.Queue.Queued, s.Spooled) }

// OldestWaiting is the creation time of the oldest waiting message.
func (s *Status) OldestWaiting() time.Time {
	oldest := s.Queue.Oldest
	if !s.SpooledOldest.IsZero() && (oldest.IsZero() || s.SpooledOldest.Before(oldest)) {
		oldest = s.SpooledOldest
	}
	return oldest
}

// Options configure the listener.
type Options struct {
	Listen string // host:port
	// Username and Password enable basic auth on every path; Password is
	// called for each request, so a changed password file takes effect
	// at once. Nil Password: no authentication.
	Username string
	Password func() (string, error)
	// Status returns a fresh snapshot; it is called once per request.
	Status func() Status
}

// Server serves the metrics and the status page.
type Server struct {
	opts Options
	log  *slog.Logger
	ln   net.Listener
	srv  *http.Server
}

// Listen binds the listener, so that a port in use is known before the
// gateway reports itself ready.
func Listen(o Options, log *slog.Logger) (*Server, error) {
	if o.Status == nil {
		return nil, errors.New("web: no status source")
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("http listener: %w", err)
	}
	s := &Server{opts: o, log: log, ln: ln}
	s.srv = &http.Server{
		Handler: s.Handler(),
		// A scraper or a browser needs none of these to be long; they
		// bound what a slow or idle client can hold.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Addr is the address the listener is bound to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run serves until ctx is done, then closes the listener and lets requests
// in progress finish for up to five seconds.
func (s *Server) Run(ctx context.Context) error {
	s.log.Info("http listener ready", "addr", s.ln.Addr().String(), "auth", s.opts.Password != nil)
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(sctx)
	<-errc
	return nil
}

// Handler returns the listener's routes with authentication applied.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", s.metrics)
	mux.HandleFunc("GET /{$}", s.page)
	return s.guard(mux)
}

// guard adds headers that keep the page inert in a browser and checks
// basic auth.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "read-only", http.StatusMethodNotAllowed)
			return
		}
		if s.opts.Password != nil && !s.authorized(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorized checks basic auth and answers 401 or 500 itself. Both sides
// are hashed before the constant-time comparison so that neither the
// length nor a prefix of the password leaks through timing.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	want, err := s.opts.Password()
	if err != nil || want == "" {
		s.log.Error("http: cannot read the password file; refusing every request", "err", err)
		http.Error(w, "authentication unavailable", http.StatusInternalServerError)
		return false
	}
	user, pass, ok := r.BasicAuth()
	if ok {
		gu, wu := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(s.opts.Username))
		gp, wp := sha256.Sum256([]byte(pass)), sha256.Sum256([]byte(want))
		if subtle.ConstantTimeCompare(gu[:], wu[:])&subtle.ConstantTimeCompare(gp[:], wp[:]) == 1 {
			return true
		}
		s.log.Warn("http: wrong credentials", "remote", r.RemoteAddr, "user", user)
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="plcmail", charset="UTF-8"`)
	http.Error(w, "authentication required", http.StatusUnauthorized)
	return false
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	st := s.opts.Status()
	var buf bytes.Buffer
	WriteMetrics(&buf, &st)
	w.Header().Set("Content-Type", ContentType)
	w.Write(buf.Bytes())
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	st := s.opts.Status()
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, newPageData(&st)); err != nil {
		s.log.Error("http: status page", "err", err)
		http.Error(w, "cannot render the status page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}
