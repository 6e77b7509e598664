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

// printOAuthStatus says, for each upstream entry signing in with OAuth,
// whether its sign-in is usable, from the token file alone (the gateway
// records a refused refresh token there), so that it also works when the
// gateway is stopped. It never prints a token.
func printOAuthStatus(w io.Writer, cfg *config.Config) {
	us, _ := cfg.UpstreamEntries()
	first := true
	for _, u := range us {
		if u.OAuth == nil {
			continue
		}
		login := "plcmail login"
		if cfg.File != config.DefaultPath {
			login = "plcmail -c " + cfg.File + " login"
		}
		if !first { // `login` alone signs in the first entry with OAuth
			login += " --upstream " + u.EntryName()
		}
		title := ""
		if len(us) > 1 {
			title = " (upstream " + u.EntryName() + ")"
		}
		printOAuthEntry(w, u.OAuth, cfg.OAuthTokenFileFor(u), login, title)
		first = false
	}
}

func printOAuthEntry(w io.Writer, o *config.OAuth, file, login, title string) {
	fmt.Fprintf(w, "\noauth%s: %s, client %s\n", title, o.Provider, o.ClientID)
	if msg := secretExpiryNote(o, time.Now()); msg != "" {
		fmt.Fprintf(w, "  %s\n", msg)
	}
	if o.Provider == config.OAuthMicrosoftAppOnly {
		fmt.Fprintln(w, "  app-only: no sign-in needed (client secret in upstream.oauth.client_secret_file)")
		return
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

// secretWarnBefore is how long before client_secret_expires status and the
// log start to warn: time to get a new secret through whoever administers
// the Azure tenant.
const secretWarnBefore = 30 * 24 * time.Hour

// secretExpiryNote describes upstream.oauth.client_secret_expires at now:
// upper case when action is needed, "" when the date is not set.
func secretExpiryNote(o *config.OAuth, now time.Time) string {
	end, ok := o.SecretExpiry()
	if !ok {
		return ""
	}
	const renew = "create a new client secret in the app registration, put it in client_secret_file and its date in client_secret_expires"
	days := int(end.Sub(now).Hours() / 24)
	switch {
	case !now.Before(end):
		return fmt.Sprintf("CLIENT SECRET EXPIRED on %s: no new tokens, mail stays queued; %s", o.ClientSecretExpires, renew)
	case end.Sub(now) <= secretWarnBefore:
		return fmt.Sprintf("CLIENT SECRET EXPIRES on %s (in %d days): %s", o.ClientSecretExpires, days, renew)
	}
	return fmt.Sprintf("client secret valid until %s (%d days)", o.ClientSecretExpires, days)
}
