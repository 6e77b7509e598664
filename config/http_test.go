package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHTTPDefaults(t *testing.T) {
	c, err := Parse("t.toml", []byte(validBase))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP != nil {
		t.Errorf("no [http] section gave %+v, want no listener", c.HTTP)
	}
	c, err = Parse("t.toml", []byte(validBase+"\n[http]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP == nil || c.HTTP.Listen != "127.0.0.1:9469" || !c.HTTP.IsLoopback() {
		t.Errorf("empty [http] gave %+v, want loopback %s", c.HTTP, DefaultHTTPListen)
	}
	for addr, loop := range map[string]bool{"[::1]:1": true, "localhost:1": true, ":9469": false, "0.0.0.0:1": false, "192.168.1.1:1": false} {
		if got := (&HTTP{Listen: addr}).IsLoopback(); got != loop {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, loop)
		}
	}
}

func TestHTTPErrors(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.secret")
	os.WriteFile(open, []byte("pw\n"), 0o644)
	empty := filepath.Join(dir, "empty.secret")
	os.WriteFile(empty, nil, 0o600)
	good := filepath.Join(dir, "good.secret")
	os.WriteFile(good, []byte("pw\n"), 0o600)

	base := validBase + "\n[http]\n" // [http] is on line 13
	tests := []struct {
		name, src, want string
	}{
		{"no port", "listen = \"127.0.0.1\"\n", ":14: http.listen: \"127.0.0.1\" is not host:port"},
		{"bad port", "listen = \"127.0.0.1:99999\"\n", ":14: http.listen: \"127.0.0.1:99999\": port must be 0..65535"},
		{"name", "listen = \"gw.lan:9469\"\n", ":14: http.listen: \"gw.lan:9469\": listen on an IP address"},
		{"user without file", "username = \"ops\"\n", ":13: http.password_file: required with username"},
		{"file without user", fmt.Sprintf("password_file = %q\n", good), ":13: http.username: required with password_file"},
		{"colon in user", fmt.Sprintf("username = \"a:b\"\npassword_file = %q\n", good), ":14: http.username: must not contain ':'"},
		{"readable file", fmt.Sprintf("username = \"ops\"\npassword_file = %q\n", open), ":15: http.password_file: " + open + " is readable by group or others (mode 0644)"},
		{"empty file", fmt.Sprintf("username = \"ops\"\npassword_file = %q\n", empty), ":15: http.password_file: " + empty + " is empty"},
		{"missing file", "username = \"ops\"\npassword_file = \"/nonexistent/x\"\n", ":15: http.password_file: stat /nonexistent/x: no such file"},
		{"unknown key", "address = \":1\"\n", ":14: http.address: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(base+tt.src))
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got\n%v\nwant a line containing %q", err, tt.want)
			}
		})
	}
	c, err := Parse("t.toml", []byte(base+fmt.Sprintf("listen = \"0.0.0.0:9469\"\nusername = \"ops\"\npassword_file = %q\n", good)))
	if err != nil {
		t.Fatal(err)
	}
	if pw, err := c.HTTP.HTTPPassword(); pw != "pw" || err != nil {
		t.Errorf("HTTPPassword = %q, %v", pw, err)
	}
}
