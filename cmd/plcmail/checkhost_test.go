package main

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// serviceUserConfig prepares a config that `plcmail check`, run as root,
// must judge as the user serve runs as: nobody owns the spool, and every
// directory up to the config is open to others.
func serviceUserConfig(t *testing.T) (c *testConfig, uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root's check stands in for another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	c = newTestConfig(t)
	for d := c.Dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	os.Mkdir(c.Spool, 0o700)
	uid, gid = atoi(nobody.Uid), atoi(nobody.Gid)
	os.Chown(c.Spool, uid, gid)
	return c, uid, gid
}

// TestCheckSecretReadableByServiceUser: `sudo plcmail check` runs as root,
// who can open anything; check must judge every secret serve opens as the
// spool's owner, the user serve runs as. The README's old recipe re-created
// the upstream secret root-owned 0600: check said ok, serve could not read it.
func TestCheckSecretReadableByServiceUser(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		config    func(c *testConfig, secret string)
	}{
		{"upstream", "upstream.password_file", func(c *testConfig, secret string) {
			c.Upstream += "\nusername = \"u@example.com\"\npassword_file = \"" + secret + "\"\n"
		}},
		{"mqtt", "mqtt.password_file", func(c *testConfig, secret string) {
			c.Extra = fmt.Sprintf("\n[mqtt]\nbroker = \"mqtts://broker.example.com\"\nusername = \"gw\"\npassword_file = %q\n", secret)
		}},
		{"channel", "channel[0].token_file", func(c *testConfig, secret string) {
			c.Extra = fmt.Sprintf("\n[[channel]]\nname = \"n\"\nkind = \"ntfy\"\nurl = \"https://ntfy.example.com/t\"\ntoken_file = %q\nseverity_at_least = \"alarm\"\n", secret)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, uid, gid := serviceUserConfig(t)
			secret := filepath.Join(c.Dir, tc.name+".secret")
			os.WriteFile(secret, []byte("pw\n"), 0o600)
			tc.config(c, secret)
			path := c.write(t)
			os.Chmod(path, 0o644)
			r := runCLI(t, "", "plcmail", "check", "-c", path)
			if r.code != 1 || !strings.Contains(r.stdout, tc.key+": serve runs as nobody") || !strings.Contains(r.stdout, "chown nobody "+secret) {
				t.Errorf("root-owned secret: %+v", r)
			}
			// The installer's way: owned by the gateway's user, 0600.
			os.Chown(secret, uid, gid)
			if r := runCLI(t, "", "plcmail", "check", "-c", path); r.code != 0 {
				t.Errorf("secret owned by the service user: %+v", r)
			}
		})
	}
}

// TestCheckConfigReadableByServiceUser: the config itself, and every
// directory on its way, must be open to the user serve runs as.
func TestCheckConfigReadableByServiceUser(t *testing.T) {
	c, _, gid := serviceUserConfig(t)
	path := c.write(t)
	os.Chmod(path, 0o644)
	if r := runCLI(t, "", "plcmail", "check", "-c", path); r.code != 0 {
		t.Fatalf("config 0644: %+v", r)
	}
	// Private to root: serve cannot read it.
	os.Chmod(path, 0o600)
	if r := runCLI(t, "", "plcmail", "check", "-c", path); r.code != 1 || !strings.Contains(r.stdout, "cannot read "+path) {
		t.Errorf("config private to root: %+v", r)
	}
	// install.sh's way: root:plcmail 0640.
	os.Chown(path, 0, gid)
	os.Chmod(path, 0o640)
	if r := runCLI(t, "", "plcmail", "check", "-c", path); r.code != 0 {
		t.Errorf("config root:group 0640: %+v", r)
	}
	// A directory on the way that the user cannot enter.
	os.Chmod(c.Dir, 0o700)
	if r := runCLI(t, "", "plcmail", "check", "-c", path); r.code != 1 || !strings.Contains(r.stdout, "directory "+c.Dir) {
		t.Errorf("directory closed: %+v", r)
	}
	os.Chmod(c.Dir, 0o755)
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// TestCheckListenNotLocal: the example config listens on 192.168.1.1; on a
// box without that address check must say so (a warning, exit 0: the
// interface may come up later), and stay quiet for addresses it has.
func TestCheckListenNotLocal(t *testing.T) {
	c := newTestConfig(t)
	c.Extra = "[smtp]\nlisten = [\"192.0.2.7:2525\", \"127.0.0.1:2525\", \"0.0.0.0:2526\", \"[::1]:2525\"]\nallowed_networks = [\"127.0.0.0/8\"]\n"
	r := runCLI(t, "", "plcmail", "check", "-c", c.write(t))
	if r.code != 0 || strings.Count(r.stdout, "warning:") != 1 || !strings.Contains(r.stdout, "smtp.listen[0]: warning: 192.0.2.7 is not an address of this machine") || !strings.HasSuffix(r.stdout, ": ok\n") {
		t.Errorf("192.0.2.7: %+v", r)
	}
	// An address of this box's interfaces: no warning.
	var mine string
	for _, ip := range localAddrs() {
		if ip.To4() != nil && !ip.IsLoopback() {
			mine = ip.String()
			break
		}
	}
	if mine == "" {
		t.Skip("no non-loopback IPv4 address on this machine")
	}
	c.Extra = "[smtp]\nlisten = [\"" + net.JoinHostPort(mine, "2525") + "\"]\nallowed_networks = [\"127.0.0.0/8\"]\n"
	if r := runCLI(t, "", "plcmail", "check", "-c", c.write(t)); r.code != 0 || strings.Contains(r.stdout, "warning") {
		t.Errorf("%s: %+v", mine, r)
	}
}

// TestCheckSerialDeviceMissing: a [[serial]] device path that does not exist
// (a typo, an adapter not plugged in) passed check with "ok" and then only
// showed as a link that never comes up. It is a warning at its line (exit
// 0: serve waits for the device), and a device that exists is not.
func TestCheckSerialDeviceMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "ttyUSB9")
	present := filepath.Join(t.TempDir(), "ttyPresent")
	if err := os.WriteFile(present, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		device string
		want   string
	}{
		{missing, "serial[0].device: warning: " + missing + " does not exist"},
		{present, ""},
	}
	for _, tt := range tests {
		c := newTestConfig(t)
		c.Extra = fmt.Sprintf("[[serial]]\nname = \"a\"\ndevice = %q\n\n[[alarm]]\ncode = 1\nto = [\"ops@example.com\"]\n", tt.device)
		path := c.write(t)
		r := runCLI(t, "", "plcmail", "check", "-c", path)
		if r.code != 0 || !strings.HasSuffix(r.stdout, ": ok\n") {
			t.Errorf("%s: %+v", tt.device, r)
		}
		if tt.want == "" {
			if strings.Contains(r.stdout, "warning") {
				t.Errorf("%s: %+v", tt.device, r)
			}
			continue
		}
		if !strings.Contains(r.stdout, tt.want) || !regexp.MustCompile(regexp.QuoteMeta(path)+`:\d+: serial\[0\]\.device`).MatchString(r.stdout) {
			t.Errorf("%s: want %q with its line: %+v", tt.device, tt.want, r)
		}
	}
}
