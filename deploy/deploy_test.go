package deploy

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/plcmail/plcmail/internal/testenv"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// plcmailBinary builds the real plcmail once per test run.
func plcmailBinary(t *testing.T) string {
	t.Helper()
	return testenv.BuildPlcmail(t)
}

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBuilds()
	os.Exit(code)
}

type install struct {
	t       *testing.T
	destdir string
	binary  string
	shell   string   // /bin/sh unless set
	env     []string // extra environment
}

func newInstall(t *testing.T) *install {
	dest := t.TempDir()
	bin := filepath.Join(t.TempDir(), "plcmail")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho fake plcmail v1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &install{t: t, destdir: dest, binary: bin}
}

// run runs install.sh with /bin/sh (dash on Debian: the script must stay
// POSIX, OpenWrt has only busybox ash) and returns its output and exit code.
func (in *install) run(args ...string) (string, int) {
	in.t.Helper()
	args = append([]string{filepath.Join(repoRoot(in.t), "deploy", "install.sh"),
		"--destdir", in.destdir, "--binary", in.binary}, args...)
	shell := in.shell
	if shell == "" {
		shell = "/bin/sh"
	}
	cmd := exec.Command(shell, args...)
	cmd.Env = append(append(os.Environ(), "DESTDIR="), in.env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		in.t.Fatal(err)
	}
	return string(out), code
}

func (in *install) mustRun(args ...string) string {
	in.t.Helper()
	out, code := in.run(args...)
	if code != 0 {
		in.t.Fatalf("install.sh %v: exit %d\n%s", args, code, out)
	}
	return out
}

func (in *install) path(p string) string { return filepath.Join(in.destdir, p) }

func (in *install) wantMode(p string, want fs.FileMode) {
	in.t.Helper()
	fi, err := os.Lstat(in.path(p))
	if err != nil {
		in.t.Errorf("%s: %v", p, err)
		return
	}
	if got := fi.Mode() & (fs.ModePerm | fs.ModeDir | fs.ModeSymlink); got != want {
		in.t.Errorf("%s: mode %v, want %v", p, got, want)
	}
}

func (in *install) read(p string) string {
	in.t.Helper()
	b, err := os.ReadFile(in.path(p))
	if err != nil {
		in.t.Fatal(err)
	}
	return string(b)
}

func TestInstallSystemdLayout(t *testing.T) {
	in := newInstall(t)
	in.mustRun("--no-user", "--systemd")

	for _, c := range []struct {
		path string
		mode fs.FileMode
	}{
		{"usr/local/bin/plcmail", 0o755},
		{"etc/plcmail", fs.ModeDir | 0o750},
		{"etc/plcmail/plcmail.toml", 0o640},
		{"etc/plcmail/upstream.secret", 0o600},
		{"var/spool/plcmail", fs.ModeDir | 0o700},
		{"etc/systemd/system/plcmail.service", 0o644},
	} {
		in.wantMode(c.path, c.mode)
	}
	if got := in.read("usr/local/bin/plcmail"); !strings.Contains(got, "fake plcmail v1") {
		t.Errorf("installed binary is not the one given: %q", got)
	}
	if got := in.read("etc/plcmail/upstream.secret"); got != "" {
		t.Errorf("new secret file should be empty, has %q", got)
	}
	example, err := os.ReadFile(filepath.Join(repoRoot(t), "configs", "plcmail.example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := in.read("etc/plcmail/plcmail.toml"); got != string(example) {
		t.Errorf("config differs from configs/plcmail.example.toml on a systemd host")
	}
	unit, _ := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "plcmail.service"))
	if in.read("etc/systemd/system/plcmail.service") != string(unit) {
		t.Errorf("installed unit differs from deploy/plcmail.service")
	}
	for _, p := range []string{"usr/sbin/sendmail", "usr/bin/mailq", "etc/init.d/plcmail"} {
		if _, err := os.Lstat(in.path(p)); err == nil {
			t.Errorf("%s installed without being asked for", p)
		}
	}
}

// A second run (an upgrade) replaces the binary but keeps the user's config
// and secret, and puts back safe modes someone loosened.
func TestInstallIdempotent(t *testing.T) {
	in := newInstall(t)
	in.mustRun("--no-user", "--systemd")

	conf := in.path("etc/plcmail/plcmail.toml")
	secret := in.path("etc/plcmail/upstream.secret")
	os.WriteFile(conf, []byte("# edited by the user\n"), 0o644)
	os.WriteFile(secret, []byte("app-password\n"), 0o644)
	os.Chmod(secret, 0o644) // WriteFile keeps the old mode of an existing file
	os.Chmod(in.path("var/spool/plcmail"), 0o755)
	os.WriteFile(in.path("var/spool/plcmail/queued-mail"), []byte("x"), 0o600)
	os.WriteFile(in.binary, []byte("#!/bin/sh\necho fake plcmail v2\n"), 0o755)

	out := in.mustRun("--no-user", "--systemd")
	if !strings.Contains(out, "kept existing /etc/plcmail/plcmail.toml") {
		t.Errorf("second run does not say it kept the config:\n%s", out)
	}
	if got := in.read("etc/plcmail/plcmail.toml"); got != "# edited by the user\n" {
		t.Errorf("config overwritten: %q", got)
	}
	if got := in.read("etc/plcmail/upstream.secret"); got != "app-password\n" {
		t.Errorf("secret overwritten: %q", got)
	}
	if got := in.read("var/spool/plcmail/queued-mail"); got != "x" {
		t.Errorf("spool content touched: %q", got)
	}
	if got := in.read("usr/local/bin/plcmail"); !strings.Contains(got, "v2") {
		t.Errorf("binary not upgraded: %q", got)
	}
	in.wantMode("etc/plcmail/upstream.secret", 0o600)
	in.wantMode("etc/plcmail/plcmail.toml", 0o640)
	in.wantMode("var/spool/plcmail", fs.ModeDir|0o700)
	if _, err := os.Stat(in.path("usr/local/bin/.plcmail.new")); err == nil {
		t.Error("temporary binary left behind")
	}
}

func TestInstallSendmailLinks(t *testing.T) {
	in := newInstall(t)
	// Another MTA's sendmail is already there: refuse, and leave it alone.
	os.MkdirAll(in.path("usr/sbin"), 0o755)
	os.WriteFile(in.path("usr/sbin/sendmail"), []byte("postfix's sendmail"), 0o755)
	out, code := in.run("--no-user", "--systemd", "--sendmail")
	if code != 1 || !strings.Contains(out, "/usr/sbin/sendmail exists") || !strings.Contains(out, "--force") {
		t.Errorf("want exit 1 naming /usr/sbin/sendmail and --force, got %d:\n%s", code, out)
	}
	if got := in.read("usr/sbin/sendmail"); got != "postfix's sendmail" {
		t.Errorf("existing sendmail replaced without --force: %q", got)
	}

	in.mustRun("--no-user", "--systemd", "--sendmail", "--force")
	for _, p := range []string{"usr/sbin/sendmail", "usr/bin/mailq"} {
		target, err := os.Readlink(in.path(p))
		if err != nil || target != "/usr/local/bin/plcmail" {
			t.Errorf("%s -> %q (%v), want /usr/local/bin/plcmail", p, target, err)
		}
	}
	// Our own links are not "another MTA": re-running needs no --force.
	in.mustRun("--no-user", "--systemd", "--sendmail")
}

func TestInstallOpenWrt(t *testing.T) {
	in := newInstall(t)
	os.MkdirAll(in.path("etc"), 0o755)
	os.WriteFile(in.path("etc/openwrt_release"), []byte("DISTRIB_ID='OpenWrt'\n"), 0o644)
	in.mustRun("--no-user") // detected from /etc/openwrt_release

	in.wantMode("usr/bin/plcmail", 0o755)
	in.wantMode("etc/init.d/plcmail", 0o755)
	in.wantMode("etc/plcmail/spool", fs.ModeDir|0o700)
	if _, err := os.Stat(in.path("var/spool/plcmail")); err == nil {
		t.Error("spool created in /var, which is RAM on OpenWrt")
	}
	if _, err := os.Stat(in.path("etc/systemd")); err == nil {
		t.Error("systemd unit installed on OpenWrt")
	}
	conf := in.read("etc/plcmail/plcmail.toml")
	if !regexp.MustCompile(`(?m)^spool_dir\s*=\s*"/etc/plcmail/spool"`).MatchString(conf) {
		t.Errorf("config does not point spool_dir at flash:\n%s", conf)
	}
	if got := in.read("lib/upgrade/keep.d/plcmail"); got != "/etc/plcmail/\n" {
		t.Errorf("sysupgrade keep list = %q", got)
	}
}

// With --destdir (packaging) and no --user, the host's accounts are left
// alone even when run as root: nothing is chown'ed to a plcmail user.
func TestInstallDestdirLeavesAccountsAlone(t *testing.T) {
	in := newInstall(t)
	out := in.mustRun("--systemd")
	if strings.Contains(out, "created system user") {
		t.Errorf("--destdir created a host account:\n%s", out)
	}
	in.wantMode("var/spool/plcmail", fs.ModeDir|0o700)
}

func TestInstallUsage(t *testing.T) {
	in := newInstall(t)
	out, code := in.run("--bogus")
	if code != 2 || !strings.Contains(out, "unknown option --bogus") {
		t.Errorf("want exit 2 for an unknown option, got %d:\n%s", code, out)
	}
	in.binary = filepath.Join(t.TempDir(), "missing")
	out, code = in.run("--no-user")
	if code != 1 || !strings.Contains(out, "no plcmail binary") {
		t.Errorf("want exit 1 for a missing binary, got %d:\n%s", code, out)
	}
}

// TestInstallCreatesUser runs the script exactly as an administrator would
// (as root, creating the account and chown'ing), but inside a private mount
// namespace where /etc is a throw-away copy: the account exists only in that
// copy, the host's users are never touched.
func TestInstallCreatesUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a user (in a private mount namespace)")
	}
	testenv.NeedTool(t, "unshare", "util-linux")
	if out, err := exec.Command("unshare", "--mount", "--propagation", "private", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot create a mount namespace here: %v %s", err, out)
	}
	t.Run("shadow-utils", func(t *testing.T) {
		testenv.NeedTool(t, "useradd", "passwd")
		testInstallCreatesUser(t, "/bin/sh", os.Getenv("PATH"), "/usr/sbin/nologin")
	})
	// OpenWrt and Alpine have busybox adduser/addgroup instead of useradd.
	t.Run("busybox", func(t *testing.T) {
		bb := busyboxUserland(t)
		testInstallCreatesUser(t, filepath.Join(bb, "sh"), bb, "/bin/false")
	})
}

func testInstallCreatesUser(t *testing.T, shell, path, loginShell string) {
	in := newInstall(t)
	etc := filepath.Join(t.TempDir(), "etc")
	if out, err := exec.Command("cp", "-a", "/etc", etc).CombinedOutput(); err != nil {
		t.Fatalf("copy /etc: %v %s", err, out)
	}
	// dialout already has a member, who must stay.
	group, err := os.ReadFile(filepath.Join(etc, "group"))
	if err != nil {
		t.Fatal(err)
	}
	group = regexp.MustCompile(`(?m)^dialout:x:(\d+):.*$`).ReplaceAll(group, []byte("dialout:x:$1:root"))
	os.WriteFile(filepath.Join(etc, "group"), group, 0o644)
	script := filepath.Join(repoRoot(t), "deploy", "install.sh")
	// Twice: the second run must find the user and not fail.
	sh := `set -e
mount --bind "$1" /etc
PATH="$6" "$5" "$2" --destdir "$3" --binary "$4" --systemd --user
mkdir "$3/var/spool/plcmail/queue" && touch "$3/var/spool/plcmail/queue/left-by-root"
install -m 600 /dev/null "$3/etc/plcmail/upstream.secret"
echo client-secret >"$3/etc/plcmail/oauth-client.secret"
PATH="$6" "$5" "$2" --destdir "$3" --binary "$4" --systemd --user >/dev/null
stat -c '%U:%G %a %n' "$3/var/spool/plcmail/queue/left-by-root" "$3/etc/plcmail/oauth-client.secret"
id -Gn plcmail
stat -c '%U:%G %a %n' "$3/var/spool/plcmail" "$3/etc/plcmail" "$3/etc/plcmail/plcmail.toml" "$3/etc/plcmail/upstream.secret" "$3/usr/local/bin/plcmail"
getent passwd plcmail`
	out, err := exec.Command("unshare", "--mount", "--propagation", "private",
		"sh", "-c", sh, "sh", etc, script, in.destdir, in.binary, shell, path).CombinedOutput()
	if err != nil {
		t.Fatalf("install as root: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	text := string(out)
	for _, want := range []string{
		"created system user plcmail",
		"plcmail:plcmail 700 " + in.path("var/spool/plcmail"),
		"root:plcmail 750 " + in.path("etc/plcmail"),
		"root:plcmail 640 " + in.path("etc/plcmail/plcmail.toml"),
		"plcmail:plcmail 600 " + in.path("etc/plcmail/upstream.secret"),
		"root:root 755 " + in.path("usr/local/bin/plcmail"),
		"plcmail:plcmail 644 " + in.path("var/spool/plcmail/queue/left-by-root"),
		// Secrets root re-created by hand between the runs: the gateway's again.
		"plcmail:plcmail 600 " + in.path("etc/plcmail/oauth-client.secret"),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q", want)
		}
	}
	if !regexp.MustCompile(`(?m)^plcmail( \S+)* dialout( |$)`).MatchString(text) {
		t.Errorf("plcmail is not in group dialout")
	}
	if !regexp.MustCompile(`(?m)^plcmail:x:\d+:\d+:[^:]*:/var/spool/plcmail:` + loginShell + `$`).MatchString(text) {
		t.Errorf("account is not a no-login system account with the spool as home")
	}
	group, _ = os.ReadFile(filepath.Join(etc, "group"))
	if !regexp.MustCompile(`(?m)^dialout:x:\d+:root,plcmail$`).Match(group) {
		t.Errorf("dialout members wrong:\n%s", regexp.MustCompile(`(?m)^dialout:.*$`).Find(group))
	}
	// The host's own /etc never saw the account.
	if b, _ := os.ReadFile("/etc/passwd"); bytes.Contains(b, []byte("\nplcmail:")) && !strings.Contains(string(b), "plcmail gateway") {
		t.Log("host already has a plcmail user of its own; not ours")
	} else if bytes.Contains(b, []byte("plcmail gateway")) {
		t.Errorf("host /etc/passwd was modified")
	}
	// And the ownership seen from outside is the namespace's uid.
	fi, err := os.Stat(in.path("var/spool/plcmail"))
	if err != nil {
		t.Fatal(err)
	}
	uid := fi.Sys().(*syscall.Stat_t).Uid
	if uid == 0 {
		t.Errorf("spool owned by root, want the plcmail uid")
	}
	if u := lookupUID(t, filepath.Join(etc, "passwd"), "plcmail"); u != uid {
		t.Errorf("spool uid %d, plcmail is %d", uid, u)
	}
}

func lookupUID(t *testing.T, passwd, name string) uint32 {
	f, err := os.Open(passwd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) > 2 && fields[0] == name {
			n, _ := strconv.Atoi(fields[2])
			return uint32(n)
		}
	}
	t.Fatalf("%s not in %s", name, passwd)
	return 0
}

// unitDirectives parses a systemd unit into key -> values.
func unitDirectives(t *testing.T, path string) map[string][]string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("bad unit line %q", line)
		}
		m[k] = append(m[k], v)
	}
	return m
}

func TestSystemdUnitHardening(t *testing.T) {
	d := unitDirectives(t, "plcmail.service")
	for _, c := range []struct{ key, want string }{
		{"User", "plcmail"},
		{"Group", "plcmail"},
		{"SupplementaryGroups", "dialout"},
		{"ProtectSystem", "strict"},
		{"ReadWritePaths", "/var/spool/plcmail"},
		{"ProtectHome", "yes"},
		{"PrivateTmp", "yes"},
		{"NoNewPrivileges", "yes"},
		{"CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"},
		{"AmbientCapabilities", "CAP_NET_BIND_SERVICE"},
		{"RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"},
		{"SystemCallFilter", "@system-service"},
		{"Restart", "on-failure"},
		{"Type", "notify"},
		{"NotifyAccess", "main"},
		{"WatchdogSec", "60s"},
		{"ExecStart", "/usr/local/bin/plcmail -c /etc/plcmail/plcmail.toml serve"},
		{"ExecReload", "/bin/kill -HUP $MAINPID"},
	} {
		found := false
		for _, v := range d[c.key] {
			found = found || v == c.want
		}
		if !found {
			t.Errorf("%s=%q missing (have %q)", c.key, c.want, d[c.key])
		}
	}
	// Serial ports through the dialout group, not a device allow-list that
	// would be resolved before a USB adapter's driver is loaded.
	if _, ok := d["DeviceAllow"]; ok {
		t.Error("DeviceAllow= set: a USB serial adapter plugged in after start would be denied")
	}
	if d["PrivateDevices"] != nil && d["PrivateDevices"][0] == "yes" {
		t.Error("PrivateDevices=yes hides the serial ports")
	}
}

// TestSystemdUnitVerify runs systemd's own checker on the unit, with the
// binary path pointed at a real plcmail so the Exec lines are checked too,
// and records the exposure score of `systemd-analyze security`.
func TestSystemdUnitVerify(t *testing.T) {
	sa := testenv.NeedTool(t, "systemd-analyze", "systemd")
	bin := plcmailBinary(t)
	unit, err := os.ReadFile("plcmail.service")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "plcmail.service")
	os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/plcmail"), []byte(bin)), 0o644)

	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	out, err = exec.Command(sa, "security", "--offline=yes", path).CombinedOutput()
	if err != nil {
		t.Logf("systemd-analyze security --offline unsupported here: %v", err)
		return
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security exposure: %.1f (0 best, 10 worst)", score)
	if score > 2.5 {
		t.Errorf("exposure %.1f > 2.5: hardening regressed\n%s", score, out)
	}

	// The Exec lines use the real command-line syntax: "-c FILE check"
	// fails on the missing file (exit 1), not as a usage error (exit 2).
	cmd := exec.Command(bin, "-c", filepath.Join(dir, "missing.toml"), "check")
	out, _ = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "missing.toml") {
		t.Errorf("plcmail -c FILE check: exit %d\n%s", cmd.ProcessState.ExitCode(), out)
	}
}

// TestOpenWrtInitScript runs the procd script's functions with procd's shell
// API replaced by recorders, and the real plcmail as PROG.
func TestOpenWrtInitScript(t *testing.T) {
	bin := plcmailBinary(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, loopbackConfig(filepath.Join(dir, "spool")), 0o644)
	stubs := `
procd_open_instance() { echo "open"; }
procd_set_param() { echo "param $*"; }
procd_close_instance() { echo "close"; }
procd_send_signal() { echo "signal $*"; }
logger() { cat >/dev/null; }
`
	// OpenWrt's shell is busybox ash: run the script there as well as in dash.
	bb := busyboxUserland(t)
	for _, shell := range []struct{ name, path, env string }{
		{"dash", "/bin/sh", ""},
		{"busybox", filepath.Join(bb, "sh"), "PATH=" + bb},
	} {
		t.Run(shell.name, func(t *testing.T) {
			call := func(conf, fn string) (string, error) {
				script := stubs + `. "$1"; PROG="$2"; CONF="$3"; RUNDIR="$4"; ` + fn
				cmd := exec.Command(shell.path, "-c", script, "sh", "openwrt/files/plcmail.init", bin, conf, filepath.Join(dir, "run"))
				if shell.env != "" {
					cmd.Env = append(os.Environ(), shell.env)
				}
				out, err := cmd.CombinedOutput()
				return string(out), err
			}
			checkInitScript(t, call, bin, good, filepath.Join(dir, "bad.toml"))
		})
	}
}

func checkInitScript(t *testing.T, call func(conf, fn string) (string, error), bin, good, bad string) {
	out, err := call(good, "start_service")
	if err != nil {
		t.Fatalf("start_service: %v\n%s", err, out)
	}
	for _, want := range []string{
		"open\n",
		"param command " + bin + " -c " + good + " serve\n",
		"param respawn 3600 5 0\n",
		"close\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("start_service output lacks %q:\n%s", want, out)
		}
	}
	out, err = call(good, "reload_service")
	if err != nil || !strings.Contains(out, "signal plcmail * HUP") {
		t.Errorf("reload_service: %v\n%s", err, out)
	}

	os.WriteFile(bad, []byte("[gateway]\nbogus = 1\n"), 0o644)
	out, err = call(bad, "start_service")
	if err == nil || strings.Contains(out, "open") {
		t.Errorf("start_service with a broken config must fail without starting: %v\n%s", err, out)
	}
	out, err = call(bad, "reload_service")
	if err == nil || strings.Contains(out, "signal") {
		t.Errorf("reload_service with a broken config must not signal: %v\n%s", err, out)
	}
}

func TestMakeCrossTargets(t *testing.T) {
	testenv.NeedTool(t, "make", "make")
	out, err := exec.Command("make", "-s", "-n", "-C", repoRoot(t), "cross").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n cross: %v\n%s", err, out)
	}
	for _, want := range []string{"linux/amd64", "linux/arm64", "linux/arm/6", "linux/arm/7", "linux/mipsle/softfloat", "CGO_ENABLED=0", "-trimpath", "-s -w -X main.version="} {
		if !strings.Contains(string(out), want) {
			t.Errorf("make cross does not use %q", want)
		}
	}
	out, _ = exec.Command("make", "-s", "-n", "-C", repoRoot(t), "test").CombinedOutput()
	if strings.TrimSpace(string(out)) != "go test -race ./..." {
		t.Errorf("make test runs %q, want the README's go test -race ./...", out)
	}
}

// TestMakeCrossBuild builds three gateway targets for real with the
// Makefile: OpenWrt's soft-float MIPS, the Raspberry Pi Zero's ARMv6 and
// 64-bit ARM. It checks each binary is what the Makefile promises (static,
// stripped, right machine, version stamped) and then runs the whole
// `plcmail demo` on it under qemu-user: pty ioctls, TLS, the spool's fsync
// and the status socket all work on the target architecture.
func TestMakeCrossBuild(t *testing.T) {
	testenv.NeedTool(t, "make", "make")
	targets := []struct {
		target, file string
		machine      elf.Machine
		class        elf.Class
		qemu         string
		settings     map[string]string
	}{
		{"linux/mipsle/softfloat", "plcmail-linux-mipsle-softfloat", elf.EM_MIPS, elf.ELFCLASS32, "qemu-mipsel", map[string]string{"GOMIPS": "softfloat"}},
		{"linux/arm/6", "plcmail-linux-armv6", elf.EM_ARM, elf.ELFCLASS32, "qemu-arm", map[string]string{"GOARM": "6"}},
		{"linux/arm64", "plcmail-linux-arm64", elf.EM_AARCH64, elf.ELFCLASS64, "qemu-aarch64", nil},
	}
	var list []string
	for _, tg := range targets {
		list = append(list, tg.target)
	}
	dist := t.TempDir()
	cmd := exec.Command("make", "-C", repoRoot(t), "cross", "TARGETS="+strings.Join(list, " "), "DIST="+dist, "VERSION=v0.0.0-maketest")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make cross: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatalf("SHA256SUMS: %v", err)
	}
	for _, tg := range targets {
		t.Run(tg.file, func(t *testing.T) {
			bin := filepath.Join(dist, tg.file)
			if !regexp.MustCompile(regexp.QuoteMeta(tg.file) + `\s+\d+\s+[0-9.]+ MiB`).Match(out) {
				t.Errorf("make cross does not print the size of %s", tg.file)
			}
			if !bytes.Contains(sums, []byte("  "+tg.file+"\n")) {
				t.Errorf("%s not in SHA256SUMS", tg.file)
			}
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != tg.machine || f.Class != tg.class || f.Data != elf.ELFDATA2LSB {
				t.Errorf("ELF %v %v %v, want %v %v little-endian", f.Machine, f.Class, f.Data, tg.machine, tg.class)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Error("binary has an ELF interpreter: not static")
				}
			}
			if f.Section(".symtab") != nil {
				t.Error("binary has a symbol table: not stripped")
			}
			if body, _ := os.ReadFile(bin); !bytes.Contains(body, []byte("text/template.plcmailMethod")) {
				t.Error("binary not built with deploy/tmplmethods' text/template overlay")
			}
			info, err := buildinfo.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			settings := map[string]string{}
			for _, s := range info.Settings {
				settings[s.Key] = s.Value
			}
			want := map[string]string{"CGO_ENABLED": "0", "-trimpath": "true"}
			for k, v := range tg.settings {
				want[k] = v
			}
			for k, v := range want {
				if settings[k] != v {
					t.Errorf("build setting %s = %q, want %q", k, settings[k], v)
				}
			}
			wantGCFlagsSetting(t, settings)
			data, _ := os.ReadFile(bin)
			if !bytes.Contains(data, []byte("v0.0.0-maketest")) {
				t.Error("version string not in the binary (main.version renamed?)")
			}
			t.Logf("%s: %d bytes (%s)", tg.file, len(data), runtime.Version())

			qemu := testenv.NeedTool(t, tg.qemu, "qemu-user")
			if out, err := exec.Command(qemu, bin, "version").CombinedOutput(); err != nil || !versionOutput("v0.0.0-maketest").Match(out) {
				t.Errorf("%s plcmail version: %v\n%s", tg.qemu, err, out)
			}
			mails := t.TempDir()
			demo := exec.Command(qemu, bin, "demo", "--pace", "100ms", "--out", mails)
			// A short TMPDIR: the demo's spool, and with it the status
			// socket's path, lives there, and qemu-user refuses socket
			// paths near the 108-byte limit that t.TempDir() reaches.
			tmp, err := os.MkdirTemp("", "q")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(tmp)
			demo.Env = append(os.Environ(), "TMPDIR="+tmp)
			out, err := demo.CombinedOutput()
			if err != nil {
				t.Fatalf("%s %s demo: %v\n%s", tg.qemu, tg.file, err, out)
			}
			// Emulation is slow: an ACK may take longer than the PLC's 1 s
			// retransmission timer, and then more than the one staged
			// duplicate is (rightly) suppressed. Mails stay exactly seven:
			// five from the PLC's frames, two from the Modbus device.
			if !regexp.MustCompile(`(?m)^  mail server\s+7 mails received`).Match(out) ||
				!regexp.MustCompile(`(?m)^  gateway\s+.* [1-9]\d* duplicates suppressed, 5 alarm mails queued, 7 delivered`).Match(out) ||
				!regexp.MustCompile(`(?m)^  modbus device\s+\d+ polls, 2 alarm mails queued`).Match(out) {
				t.Errorf("demo on %s under %s:\n%s", tg.file, tg.qemu, out)
			}
			if emls, _ := filepath.Glob(filepath.Join(mails, "*.eml")); len(emls) != 7 {
				t.Errorf("%d .eml files, want 7", len(emls))
			}
		})
	}
}

// TestMakeInstall checks the Makefile's install target end to end: it
// builds the host binary and hands it to install.sh, whose result runs.
func TestMakeInstall(t *testing.T) {
	testenv.NeedTool(t, "make", "make")
	dest := t.TempDir()
	out, err := exec.Command("make", "-C", repoRoot(t), "install", "DESTDIR="+dest, "INSTALL_FLAGS=--no-user --systemd").CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	bin := filepath.Join(dest, "usr/local/bin/plcmail")
	out, err = exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "plcmail ") {
		t.Errorf("installed plcmail version: %v\n%s", err, out)
	}
	for _, p := range []string{"etc/plcmail/plcmail.toml", "etc/systemd/system/plcmail.service", "var/spool/plcmail"} {
		if _, err := os.Stat(filepath.Join(dest, p)); err != nil {
			t.Errorf("make install did not create %s: %v", p, err)
		}
	}
}

// busyboxUserland returns a directory holding only busybox applets, like
// the PATH of an OpenWrt router, so scripts meant for one run with nothing
// from GNU coreutils, dash or util-linux.
func busyboxUserland(t *testing.T) string {
	bb := testenv.NeedTool(t, "busybox", "busybox")
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	dir := t.TempDir()
	for _, applet := range strings.Fields(string(out)) {
		if err := os.Symlink(bb, filepath.Join(dir, applet)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestInstallBusybox runs the installer on a busybox-only userland, as on
// OpenWrt.
func TestInstallBusybox(t *testing.T) {
	bin := busyboxUserland(t)
	in := newInstall(t)
	in.shell = filepath.Join(bin, "sh")
	in.env = []string{"PATH=" + bin}
	os.MkdirAll(in.path("etc"), 0o755)
	os.WriteFile(in.path("etc/openwrt_release"), []byte("DISTRIB_ID='OpenWrt'\n"), 0o644)
	in.mustRun("--no-user", "--sendmail")
	in.mustRun("--no-user", "--sendmail") // idempotent there too
	in.wantMode("usr/bin/plcmail", 0o755)
	in.wantMode("etc/init.d/plcmail", 0o755)
	in.wantMode("etc/plcmail/upstream.secret", 0o600)
	in.wantMode("etc/plcmail/spool", fs.ModeDir|0o700)
	if target, _ := os.Readlink(in.path("usr/sbin/sendmail")); target != "/usr/bin/plcmail" {
		t.Errorf("sendmail -> %q", target)
	}
}

// loopbackConfig is the smallest valid configuration with its spool at
// spoolDir: a loopback upstream without TLS, so `check` passes offline.
func loopbackConfig(spoolDir string) []byte {
	return []byte(`[gateway]
hostname = "gw.test"
spool_dir = "` + spoolDir + `"
[upstream]
host = "127.0.0.1"
port = 2525
security = "none"
auth = "none"
from = "plc@gw.test"
[[alarm]]
default = true
subject = "alarm {{.Code}}"
body = "code {{.Code}}"
to = ["ops@example.com"]
`)
}
