package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/plcmail/plcmail/config"
)

// Checks of the configuration against this machine, which only check runs:
// serve finds out by itself, as the user it runs as, on this box.

// serviceUser is who serve runs as, when check can tell it and it differs
// from the caller: `sudo plcmail check` as root opens every file, so a
// secret that root re-created (owner root, mode 0600) passes, and then
// serve as the gateway's user cannot read it. The spool's owner is that
// user: install.sh makes it so, and send and queue act as it.
type serviceUser struct {
	name     string
	uid      uint32
	gids     []uint32 // primary group first
	spoolDir string
}

func findServiceUser(cfg *config.Config) (*serviceUser, bool) {
	if os.Geteuid() != 0 {
		return nil, false
	}
	fi, err := os.Stat(cfg.Gateway.SpoolDir)
	if err != nil {
		return nil, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil, false
	}
	su := &serviceUser{name: "uid " + strconv.Itoa(int(st.Uid)), uid: st.Uid, spoolDir: cfg.Gateway.SpoolDir}
	u, err := user.LookupId(strconv.Itoa(int(st.Uid)))
	if err != nil {
		// No account: all we know is the spool's group.
		su.gids = []uint32{st.Gid}
		return su, true
	}
	su.name = u.Username
	// serve's groups are the account's: systemd's User= and procd's user
	// both set them (dialout for the serial ports).
	ids, _ := u.GroupIds()
	for _, s := range append([]string{u.Gid}, ids...) {
		if g, err := strconv.Atoi(s); err == nil && !slices.Contains(su.gids, uint32(g)) {
			su.gids = append(su.gids, uint32(g))
		}
	}
	return su, true
}

// filesServeReads lists the files serve opens, by the key that names them.
func filesServeReads(cfg *config.Config) [][2]string {
	var out [][2]string
	add := func(key, path string) {
		if path != "" {
			out = append(out, [2]string{key, path})
		}
	}
	add("upstream.password_file", cfg.Upstream.PasswordFile)
	add("upstream.ca_file", cfg.Upstream.CAFile)
	if o := cfg.Upstream.OAuth; o != nil {
		add("upstream.oauth.client_secret_file", o.ClientSecretFile)
		add("upstream.oauth.ca_file", o.CAFile)
	}
	if s := cfg.SMTP; s != nil {
		add("smtp.tls_cert_file", s.TLSCertFile)
		add("smtp.tls_key_file", s.TLSKeyFile)
		for i, a := range s.Accounts {
			add(fmt.Sprintf("smtp.account[%d].password_file", i), a.PasswordFile)
		}
	}
	if m := cfg.MQTT; m != nil {
		add("mqtt.password_file", m.PasswordFile)
		add("mqtt.ca_file", m.CAFile)
	}
	for i, c := range cfg.Channel {
		add(fmt.Sprintf("channel[%d].token_file", i), c.TokenFile)
		add(fmt.Sprintf("channel[%d].password_file", i), c.PasswordFile)
		add(fmt.Sprintf("channel[%d].ca_file", i), c.CAFile)
	}
	return out
}

// checkServiceUserAccess reports every file serve must read that the
// service user cannot, with the command that fixes it.
func checkServiceUserAccess(cfg *config.Config, su *serviceUser) config.Errors {
	var problems config.Errors
	why := func(path string, secret bool, err error) string {
		fix := fmt.Sprintf("chown %s %s (a secret must stay mode 0600)", su.name, path)
		if !secret {
			fix = fmt.Sprintf("chgrp %s %s && chmod g+r %s", su.groupName(), path, path)
		}
		var dirErr *dirError
		if errors.As(err, &dirErr) {
			fix = fmt.Sprintf("chmod o+x %s, or give it to group %s", dirErr.dir, su.groupName())
		}
		return fmt.Sprintf("serve runs as %s (the owner of %s) and cannot read %s: %v; run: %s",
			su.name, su.spoolDir, path, err, fix)
	}
	if err := su.canRead(cfg.File); err != nil {
		problems = append(problems, &config.Error{File: cfg.File, Msg: why(cfg.File, false, err)})
	}
	for _, f := range filesServeReads(cfg) {
		secret := strings.HasSuffix(f[0], "password_file") || strings.HasSuffix(f[0], "secret_file") || strings.HasSuffix(f[0], "key_file") || strings.HasSuffix(f[0], "token_file")
		if err := su.canRead(f[1]); err != nil {
			problems = append(problems, cfg.Errorf(f[0], "%s", why(f[1], secret, err)))
		}
	}
	return problems
}

// groupName is the name of the service user's primary group.
func (su *serviceUser) groupName() string {
	if len(su.gids) == 0 {
		return su.name
	}
	g := strconv.Itoa(int(su.gids[0]))
	if gr, err := user.LookupGroupId(g); err == nil {
		return gr.Name
	}
	return g
}

// dirError is a directory on the way to a file that the user cannot search.
type dirError struct {
	dir string
	err error
}

func (e *dirError) Error() string { return "directory " + e.dir + ": " + e.err.Error() }
func (e *dirError) Unwrap() error { return e.err }

// canRead applies the kernel's permission rules for the service user to
// path: search (x) on every directory above it, read on the file. POSIX
// ACLs are not looked at; the installer does not use them.
func (su *serviceUser) canRead(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		if err := su.allowed(dir, 1); err != nil {
			return &dirError{dir, err}
		}
		if dir == "/" || dir == "." {
			break
		}
	}
	return su.allowed(abs, 4)
}

var errNoAccess = errors.New("not permitted")

// allowed checks one permission bit (4 read, 1 search) with the owner,
// group, other precedence of the kernel: an owner without the bit is
// refused even when others have it.
func (su *serviceUser) allowed(path string, bit uint32) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // reported by the config's own checks
		}
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	mode := uint32(fi.Mode().Perm())
	var have uint32
	var as string
	switch {
	case st.Uid == su.uid:
		have, as = mode>>6&7, "as its owner"
	case slices.Contains(su.gids, st.Gid):
		have, as = mode>>3&7, "through its group"
	default:
		have, as = mode&7, "as other"
	}
	if have&bit == 0 {
		owner := strconv.Itoa(int(st.Uid))
		if u, err := user.LookupId(owner); err == nil {
			owner = u.Username
		}
		return fmt.Errorf("%w %s (owner %s, mode %04o)", errNoAccess, as, owner, mode)
	}
	return nil
}

// listenWarnings names the [smtp] listen addresses that are not addresses
// of this machine: serve would fail to bind them. Only a warning, since an
// interface may come up later (DHCP, a USB Ethernet adapter) and systemd
// restarts the gateway.
func listenWarnings(cfg *config.Config, local []net.IP) config.Errors {
	if cfg.SMTP == nil {
		return nil
	}
	var out config.Errors
	for i, a := range cfg.SMTP.Listen {
		host, _, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			continue // a bad address is an error of its own; "" is every address
		}
		ip := net.ParseIP(host)
		if ip == nil || ip.IsUnspecified() || ip.IsLoopback() {
			continue // names are resolved by serve; 0.0.0.0 and loopback always bind
		}
		if !slices.ContainsFunc(local, ip.Equal) {
			e := cfg.Errorf(fmt.Sprintf("smtp.listen[%d]", i), "warning: %s is not an address of this machine (ip -br addr shows them); serve will not be able to listen on %s until it is", host, a)
			if e.Line == 0 {
				e = cfg.Errorf("smtp.listen", "%s", e.Msg)
			}
			out = append(out, e)
		}
	}
	return out
}

// deviceWarnings names the [[serial]] devices that do not exist now: a typo
// in the path passed check and only showed as a link that never came up.
// Only a warning, since an adapter may be plugged in later and serve opens
// the device when it appears.
func deviceWarnings(cfg *config.Config) config.Errors {
	var out config.Errors
	for i, s := range cfg.Serial {
		if s.Device == "" {
			continue // found by USB ids
		}
		if _, err := os.Stat(s.Device); errors.Is(err, fs.ErrNotExist) {
			e := cfg.Errorf(fmt.Sprintf("serial[%d].device", i), "warning: %s does not exist now (a typo, or not plugged in? ls /dev/serial/by-id/); serve opens it when it appears", s.Device)
			out = append(out, e)
		}
	}
	return out
}

// localAddrs are the IP addresses of this machine's interfaces.
func localAddrs() []net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var ips []net.IP
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ips = append(ips, n.IP)
		}
	}
	return ips
}
