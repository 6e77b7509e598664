package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/plcmail/plcmail/oauth"
)

// cmdLogin runs the one-time OAuth2 sign-in of [upstream.oauth] and stores
// the refresh token, which the gateway then keeps fresh on its own. It
// prints a URL and a code (Microsoft) or a URL to open and an address to
// paste back (Google), so it works over SSH on a box without a browser.
func cmdLogin(ctx context.Context, e *env, args []string) error {
	fs := subFlags(e, "login")
	entry := fs.String("upstream", "", "with several [[upstream]] entries: the name of the one to sign in (default: the first with [upstream.oauth])")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("login takes no arguments (use -c FILE)")
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	u, err := loginEntry(cfg, *entry) // upstreams.go
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	// The token file belongs to the gateway's user, like the spool it
	// lives in: root signs in as that user.
	if err := actAsSpoolOwner(cfg.Gateway.SpoolDir); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	src, err := oauthSourceFor(cfg, u)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	// Checked before the person signs in, not after.
	if tf := src.TokenFile(); tf != "" {
		if parent := filepath.Dir(filepath.Dir(tf)); !isDir(parent) {
			return fmt.Errorf("login: %s does not exist: create it for the gateway's user first (install.sh does; or start plcmail serve once), so that the token file %s belongs to that user", parent, tf)
		}
	}
	fmt.Fprintf(e.stdout, "Signing in %s for %s (%s, client %s).\n", u.Username, u.Host, src.Provider(), u.OAuth.ClientID)
	// A person types; give them time, but not forever.
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	if err := src.Login(ctx, e.stdin, e.stdout); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	if src.Provider() == oauth.MicrosoftAppOnly {
		return nil
	}
	who := ""
	if fi, err := os.Stat(src.TokenFile()); err == nil {
		who = fmt.Sprintf(", mode %04o", fi.Mode().Perm())
	}
	fmt.Fprintf(e.stdout, "Signed in. The refresh token is stored in %s%s;\nthe gateway keeps it fresh from now on. Mail waiting in the queue goes out\nat the next attempt (plcmail queue flush sends it now).\n", src.TokenFile(), who)
	return nil
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
