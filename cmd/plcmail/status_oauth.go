package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/oauth"
)

// printOAuthStatus says whether the upstream's OAuth sign-in is usable, from
// the token file alone (the gateway records a refused refresh token
// there), so that it also works when the gateway is stopped. It never
// prints a token.
func printOAuthStatus(w io.Writer, cfg *config.Config) {
	o := cfg.Upstream.OAuth
	if o == nil {
		return
	}
	fmt.Fprintf(w, "\noauth: %s, client %s\n", o.Provider, o.ClientID)
	if o.Provider == config.OAuthMicrosoftAppOnly {
		fmt.Fprintln(w, "  app-only: no sign-in needed (client secret in upstream.oauth.client_secret_file)")
		return
	}
	file := cfg.OAuthTokenFile()
	login := "plcmail login"
	if cfg.File != config.DefaultPath {
		login = "plcmail -c " + cfg.File + " login"
	}
	st, err := oauth.ReadStore(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(w, "  LOGIN NEEDED: not signed in yet (no %s): run %s\n", file, login)
	case err != nil:
		fmt.Fprintf(w, "  cannot read the token file: %v\n", err)
	case st.LoginNeeded != "":
		fmt.Fprintf(w, "  LOGIN NEEDED since %s: %s\n  mail stays queued until you run: %s\n",
			st.LoginNeededSince.Local().Format(time.DateTime), st.LoginNeeded, login)
	default:
		fmt.Fprintf(w, "  signed in; token refreshed %s", st.Updated.Local().Format(time.DateTime))
		if !st.Expiry.IsZero() {
			fmt.Fprintf(w, ", access token valid until %s", st.Expiry.Local().Format(time.DateTime))
		}
		fmt.Fprintf(w, " (%s)\n", file)
	}
}
