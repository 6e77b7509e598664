package oauth

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Login runs the one-time sign-in for providers that NeedsLogin and stores
// the refresh token; for microsoft-app-only it fetches a token to prove
// that the client credentials work. It talks to the person through in and
// out only (no browser is started: the box is usually reached over SSH).
func (s *Source) Login(ctx context.Context, in io.Reader, out io.Writer) error {
	switch s.opts.Provider {
	case MicrosoftAppOnly:
		s.mu.Lock()
		s.access = ""
		_, err := s.fetch(ctx, "")
		exp := s.expiry
		s.mu.Unlock()
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "microsoft-app-only needs no sign-in: the client credentials work (token valid until %s).\n", exp.Local().Format(time.DateTime))
		return nil
	case MicrosoftDelegated:
		tok, err := s.deviceLogin(ctx, out)
		if err != nil {
			return err
		}
		return s.Save(tok)
	case Google:
		tok, err := s.browserLogin(ctx, in, out)
		if err != nil {
			return err
		}
		return s.Save(tok)
	}
	return fmt.Errorf("oauth: unknown provider %q", s.opts.Provider)
}

// deviceLogin is the device authorization grant (RFC 8628).
func (s *Source) deviceLogin(ctx context.Context, out io.Writer) (*oauth2.Token, error) {
	conf := *s.conf
	sec, err := s.secret()
	if err != nil {
		return nil, err
	}
	conf.ClientSecret = sec
	hctx := s.ctx(ctx)
	da, err := conf.DeviceAuth(hctx)
	if err != nil {
		return nil, s.explain(err)
	}
	fmt.Fprintf(out, "To sign in, open %s in a browser on any device\nand enter the code %s\n", da.VerificationURI, da.UserCode)
	if !da.Expiry.IsZero() {
		fmt.Fprintf(out, "(the code expires at %s). Waiting for the sign-in...\n", da.Expiry.Local().Format(time.TimeOnly))
	}
	tok, err := conf.DeviceAccessToken(hctx, da)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, errors.New("oauth: the code expired before the sign-in was completed; run login again")
		}
		return nil, s.explain(err)
	}
	return tok, nil
}

// browserLogin is the installed-app flow with PKCE. The redirect goes to a
// loopback listener on this box; when the browser runs elsewhere (SSH)
// that page does not load, and the person pastes its address, or just
// the code, back into the terminal instead. Whichever arrives first wins.
func (s *Source) browserLogin(ctx context.Context, in io.Reader, out io.Writer) (*oauth2.Token, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	conf := *s.conf
	sec, err := s.secret()
	if err != nil {
		return nil, err
	}
	conf.ClientSecret = sec
	conf.RedirectURL = "http://" + ln.Addr().String() + "/"
	var st [16]byte
	rand.Read(st[:])
	state := hex.EncodeToString(st[:])
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL(state, oauth2.AccessTypeOffline, oauth2.ApprovalForce, oauth2.S256ChallengeOption(verifier))

	type result struct {
		code string
		err  error
	}
	got := make(chan result, 2)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, err := codeFrom(r.URL.Query(), state)
		if err != nil {
			http.Error(w, "plcmail: "+err.Error(), http.StatusBadRequest)
		} else {
			fmt.Fprintf(w, "<p>plcmail: signed in. You can close this page.</p>")
		}
		select {
		case got <- result{code, err}:
		default:
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	go func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" {
				continue
			}
			if u, err := url.Parse(line); err == nil && u.RawQuery != "" {
				code, err := codeFrom(u.Query(), state)
				got <- result{code, err}
				return
			}
			got <- result{line, nil}
			return
		}
	}()

	fmt.Fprintf(out, "To sign in, open this URL in a browser on any device:\n\n  %s\n\n", authURL)
	fmt.Fprintf(out, "After you allow access, the browser goes to %s\n", html.EscapeString(conf.RedirectURL))
	fmt.Fprintf(out, "If the browser runs on another machine that page does not load: copy the\nwhole address from the browser's address bar and paste it here, then press Enter.\n")
	var r result
	select {
	case r = <-got:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, r.err
	}
	tok, err := conf.Exchange(s.ctx(ctx), r.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, s.explain(err)
	}
	return tok, nil
}

// codeFrom takes the code from a redirect's query after checking state.
func codeFrom(q url.Values, state string) (string, error) {
	if e := q.Get("error"); e != "" {
		return "", fmt.Errorf("oauth: sign-in refused: %s %s", e, firstLine(q.Get("error_description")))
	}
	if q.Get("state") != state {
		return "", errors.New("oauth: the answer is for another sign-in (state does not match); run login again")
	}
	code := q.Get("code")
	if code == "" {
		return "", errors.New("oauth: no code in the answer")
	}
	return code, nil
}
