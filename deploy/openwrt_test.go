package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/buildinfo"
	"debug/elf"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/plcmail/plcmail/internal/testenv"
)

// ipkEntry is one file of an ipk's data or control archive.
type ipkEntry struct {
	mode     fs.FileMode
	uid, gid int
	body     []byte
}

type ipk struct {
	outer   []string // member names of the outer archive, in order
	debian  string
	control map[string]ipkEntry
	data    map[string]ipkEntry
}

func untar(t *testing.T, r io.Reader) ([]string, map[string]ipkEntry) {
	t.Helper()
	zr, err := gzip.NewReader(r)
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	var names []string
	files := map[string]ipkEntry{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		names = append(names, h.Name)
		files[name] = ipkEntry{h.FileInfo().Mode(), h.Uid, h.Gid, body}
	}
	return names, files
}

func readIPK(t *testing.T, path string) ipk {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var p ipk
	var outer map[string]ipkEntry
	p.outer, outer = untar(t, f)
	p.debian = string(outer["debian-binary"].body)
	_, p.control = untar(t, bytes.NewReader(outer["control.tar.gz"].body))
	_, p.data = untar(t, bytes.NewReader(outer["data.tar.gz"].body))
	return p
}

func controlFields(b []byte) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
			m[k] = v
		}
	}
	return m
}

var openwrtArches = []struct {
	arch    string
	machine elf.Machine
	qemu    string
}{
	{"mipsel_24kc", elf.EM_MIPS, "qemu-mipsel"},
	{"arm_cortex-a7", elf.EM_ARM, "qemu-arm"},
	{"aarch64_cortex-a53", elf.EM_AARCH64, "qemu-aarch64"},
}

// TestMakeOpenWrt builds the three OpenWrt packages with `make openwrt`,
// checks what is in each, runs each packaged binary under qemu-user, and
// installs the MIPS one into a throw-away OpenWrt-like root with its
// maintainer scripts (see installIPK).
func TestMakeOpenWrt(t *testing.T) {
	testenv.NeedTool(t, "make", "make")
	dist := t.TempDir()
	out, err := exec.Command("make", "-C", repoRoot(t), "openwrt", "DIST="+dist, "VERSION=v1.2.3").CombinedOutput()
	if err != nil {
		t.Fatalf("make openwrt: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	example, err := os.ReadFile(filepath.Join(repoRoot(t), "configs", "plcmail.example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range openwrtArches {
		t.Run(a.arch, func(t *testing.T) {
			path := filepath.Join(dist, "openwrt", "plcmail_1.2.3-1_"+a.arch+".ipk")
			p := readIPK(t, path)
			if want := []string{"./debian-binary", "./data.tar.gz", "./control.tar.gz"}; strings.Join(p.outer, " ") != strings.Join(want, " ") {
				t.Errorf("outer archive %q, want %q", p.outer, want)
			}
			if p.debian != "2.0\n" {
				t.Errorf("debian-binary %q", p.debian)
			}
			c := controlFields(p.control["control"].body)
			for k, want := range map[string]string{
				"Package": "plcmail", "Version": "1.2.3-1", "Architecture": a.arch,
				"Depends": "ca-bundle", "Section": "mail", "Require-User": "plcmail:plcmail:dialout",
			} {
				if c[k] != want {
					t.Errorf("control %s = %q, want %q", k, c[k], want)
				}
			}
			if n, err := strconv.Atoi(c["Installed-Size"]); err != nil || n < 1<<20 {
				t.Errorf("Installed-Size %q", c["Installed-Size"])
			}
			conffiles := strings.Fields(string(p.control["conffiles"].body))
			if strings.Join(conffiles, " ") != "/etc/config/plcmail /etc/plcmail/plcmail.toml /etc/plcmail/upstream.secret" {
				t.Errorf("conffiles %q", conffiles)
			}
			for _, cf := range conffiles {
				if _, ok := p.data[strings.TrimPrefix(cf, "/")]; !ok {
					t.Errorf("conffile %s not in the package", cf)
				}
			}
			for _, s := range []string{"postinst", "prerm"} {
				e := p.control[s]
				if e.mode != 0o755 || !bytes.HasPrefix(e.body, []byte("#!/bin/sh\n")) {
					t.Errorf("control %s: mode %v, starts %q", s, e.mode, e.body[:min(len(e.body), 12)])
				}
			}
			for name, mode := range map[string]fs.FileMode{
				"usr/bin/plcmail":             0o755,
				"etc/init.d/plcmail":          0o755,
				"etc/config/plcmail":          0o644,
				"etc/plcmail":                 fs.ModeDir | 0o750,
				"etc/plcmail/plcmail.toml":    0o640,
				"etc/plcmail/upstream.secret": 0o600,
				"lib/upgrade/keep.d/plcmail":  0o644,
			} {
				e, ok := p.data[name]
				if !ok {
					t.Errorf("%s not in data.tar.gz", name)
					continue
				}
				if e.mode&(fs.ModePerm|fs.ModeDir) != mode {
					t.Errorf("%s: mode %v, want %v", name, e.mode, mode)
				}
			}
			for name, e := range p.data {
				if e.uid != 0 || e.gid != 0 {
					t.Errorf("%s owned by %d:%d in the archive, want 0:0", name, e.uid, e.gid)
				}
				if strings.HasPrefix(name, "etc/plcmail/spool") {
					t.Errorf("%s in the package: the spool is made by postinst and never removed with the package", name)
				}
			}
			if len(p.data["etc/plcmail/upstream.secret"].body) != 0 {
				t.Error("packaged secret is not empty")
			}
			init, _ := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "openwrt", "files", "plcmail.init"))
			if !bytes.Equal(p.data["etc/init.d/plcmail"].body, init) {
				t.Error("init script differs from deploy/openwrt/files/plcmail.init")
			}
			if keep := string(p.data["lib/upgrade/keep.d/plcmail"].body); keep != "/etc/plcmail/\n" {
				t.Errorf("keep.d %q: sysupgrade must keep /etc/plcmail/ (config, secret, spool)", keep)
			}
			conf := string(p.data["etc/plcmail/plcmail.toml"].body)
			if !regexp.MustCompile(`(?m)^spool_dir\s*=\s*"/etc/plcmail/spool"`).MatchString(conf) {
				t.Error("packaged config does not put the spool on flash (/etc/plcmail/spool)")
			}
			if strings.Count(conf, "\n") != strings.Count(string(example), "\n") {
				t.Error("packaged config is not the example with two paths changed")
			}

			bin := filepath.Join(t.TempDir(), "plcmail")
			os.WriteFile(bin, p.data["usr/bin/plcmail"].body, 0o755)
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			if f.Machine != a.machine || f.Section(".symtab") != nil {
				t.Errorf("binary: machine %v (want %v), symbols stripped: %v", f.Machine, a.machine, f.Section(".symtab") == nil)
			}
			// The function table names functions in stripped binaries too.
			if !bytes.Contains(p.data["usr/bin/plcmail"].body, []byte("text/template.plcmailMethod")) {
				t.Error("binary not built with deploy/tmplmethods' text/template overlay")
			}
			f.Close()
			info, err := buildinfo.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			settings := map[string]string{}
			for _, s := range info.Settings {
				settings[s.Key] = s.Value
			}
			wantGCFlagsSetting(t, settings)
			if !slices.Contains(strings.Split(settings["-tags"], ","), "nodemo") {
				t.Errorf("build setting -tags = %q, want OPENWRT_BUILDTAGS' nodemo", settings["-tags"])
			}
			qemu := testenv.NeedTool(t, a.qemu, "qemu-user")
			if out, err := exec.Command(qemu, bin, "version").CombinedOutput(); err != nil || !versionOutput("v1.2.3").Match(out) {
				t.Errorf("%s plcmail version: %v\n%s", a.qemu, err, out)
			}
			if out, err := exec.Command(qemu, bin, "demo").CombinedOutput(); err == nil || !strings.Contains(string(out), "demo is not in this build") {
				t.Errorf("%s plcmail demo in the package: %v\n%s", a.qemu, err, out)
			}
			if a.arch == "mipsel_24kc" {
				t.Run("install", func(t *testing.T) { installIPK(t, p, qemu) })
			}
			t.Run("apk", func(t *testing.T) { checkAPK(t, dist, a.arch, p) })
		})
	}
}

// versionOutput matches what `plcmail version` prints for a binary the
// Makefile built with VERSION=version from this checkout: the commit's full
// hash, never "unknown" (a test run from a git worktree, where Go records no
// vcs.revision, relies on the Makefile's -X main.commit).
func versionOutput(version string) *regexp.Regexp {
	return regexp.MustCompile(`^plcmail ` + regexp.QuoteMeta(version) + `\ncommit  [0-9a-f]{40}( \(modified\))?\ngo      `)
}

// TestFeedCommit checks that the SDK feed Makefile stamps the commit:
// the SDK builds from a tarball of the checkout without .git, so Go records
// no vcs.revision and `plcmail version` would say "commit unknown".
func TestFeedCommit(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "openwrt", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(\w+):=(.*)$`).FindAllSubmatch(mk, -1) {
		vars[string(m[1])] = string(m[2])
	}
	if v := vars["PKG_SOURCE_VERSION"]; !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(v) {
		t.Errorf("PKG_SOURCE_VERSION %q, want a full commit hash (it is stamped as the commit)", v)
	}
	if x := strings.Fields(vars["GO_PKG_LDFLAGS_X"]); !slices.Contains(x, "main.commit=$(PKG_SOURCE_VERSION)") || !slices.Contains(x, "main.version=v$(PKG_VERSION)") {
		t.Errorf("GO_PKG_LDFLAGS_X %q does not stamp main.version and main.commit", x)
	}
}

// installIPK unpacks the package into a throw-away root laid out like an
// OpenWrt router (busybox, /etc/passwd with dialout, an rc.common stand-in
// from testdata) and runs its maintainer scripts there with busybox sh:
// first as the image builder does (IPKG_INSTROOT), then, as root, inside a
// chroot as opkg on the router does, where the MIPS binary runs through
// qemu-user for `plcmail check` on the packaged config.
func installIPK(t *testing.T, p ipk, qemu string) {
	bb := testenv.NeedTool(t, "busybox", "busybox")
	root := t.TempDir()
	for name, e := range p.data {
		dst := filepath.Join(root, name)
		if e.mode.IsDir() {
			os.MkdirAll(dst, e.mode.Perm())
			os.Chmod(dst, e.mode.Perm())
			continue
		}
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, e.body, e.mode.Perm()); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dst, e.mode.Perm())
	}
	info := filepath.Join(root, "usr/lib/opkg/info")
	os.MkdirAll(info, 0o755)
	for _, s := range []string{"postinst", "prerm"} {
		os.WriteFile(filepath.Join(info, "plcmail."+s), p.control[s].body, 0o755)
	}
	etc := filepath.Join(root, "etc")
	os.WriteFile(filepath.Join(etc, "passwd"), []byte("root:x:0:0:root:/root:/bin/ash\nnobody:*:65534:65534:nobody:/var:/bin/false\n"), 0o644)
	os.WriteFile(filepath.Join(etc, "group"), []byte("root:x:0:\ndialout:x:20:\nnogroup:x:65534:\n"), 0o644)
	os.WriteFile(filepath.Join(etc, "shadow"), []byte("root:::0:99999:7:::\n"), 0o600)
	rc, _ := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "testdata", "rc.common"))
	os.WriteFile(filepath.Join(etc, "rc.common"), rc, 0o755)
	os.MkdirAll(filepath.Join(root, "tmp"), 0o1777)

	script := func(name string, env ...string) string {
		t.Helper()
		cmd := exec.Command(bb, "sh", filepath.Join(info, "plcmail."+name))
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		return string(out)
	}
	read := func(p string) string { b, _ := os.ReadFile(filepath.Join(root, p)); return string(b) }

	// The image builder's way: offline, into a firmware root.
	script("postinst", "IPKG_INSTROOT="+root)
	script("postinst", "IPKG_INSTROOT="+root) // twice: nothing doubled
	passwd, group := read("etc/passwd"), read("etc/group")
	if strings.Count(passwd, "\nplcmail:") != 1 || !regexp.MustCompile(`(?m)^plcmail:x:(\d+):(\d+):[^:]*:/etc/plcmail/spool:/bin/false$`).MatchString(passwd) {
		t.Errorf("passwd:\n%s", passwd)
	}
	if !regexp.MustCompile(`(?m)^dialout:x:20:plcmail$`).MatchString(group) || strings.Count(group, "\nplcmail:") != 1 {
		t.Errorf("group:\n%s", group)
	}
	if !strings.Contains(read("etc/shadow"), "plcmail:*:") {
		t.Errorf("no locked shadow entry:\n%s", read("etc/shadow"))
	}
	for _, l := range []string{"etc/rc.d/S95plcmail", "etc/rc.d/K10plcmail"} {
		if target, err := os.Readlink(filepath.Join(root, l)); err != nil || target != "../init.d/plcmail" {
			t.Errorf("%s -> %q (%v): service not enabled", l, target, err)
		}
	}
	wantModes := map[string]fs.FileMode{
		"etc/plcmail":                 fs.ModeDir | 0o750,
		"etc/plcmail/plcmail.toml":    0o640,
		"etc/plcmail/upstream.secret": 0o600,
		"etc/plcmail/spool":           fs.ModeDir | 0o700,
	}
	for name, mode := range wantModes {
		fi, err := os.Stat(filepath.Join(root, name))
		if err != nil || fi.Mode()&(fs.ModePerm|fs.ModeDir) != mode {
			t.Errorf("%s: %v %v, want %v", name, fi.Mode(), err, mode)
		}
	}
	script("prerm", "IPKG_INSTROOT="+root)
	if _, err := os.Lstat(filepath.Join(root, "etc/rc.d/S95plcmail")); err == nil {
		t.Error("prerm left the service enabled")
	}

	if os.Geteuid() != 0 {
		t.Skip("the on-router install runs in a chroot: needs root")
	}
	testenv.NeedTool(t, "chroot", "coreutils")
	// The router: busybox as every command, and the MIPS binary through
	// qemu-user (a wrapper at the packaged path; no binfmt_misc needed).
	copyWithLibs(t, root, bb, "/bin/busybox")
	copyWithLibs(t, root, qemu, "/usr/bin/qemu-mipsel")
	list, _ := exec.Command(bb, "--list").Output()
	for _, applet := range strings.Fields(string(list)) {
		for _, dir := range []string{"bin", "sbin", "usr/bin"} {
			os.MkdirAll(filepath.Join(root, dir), 0o755)
		}
		if _, err := os.Lstat(filepath.Join(root, "bin", applet)); err != nil {
			os.Symlink("/bin/busybox", filepath.Join(root, "bin", applet))
		}
	}
	os.MkdirAll(filepath.Join(root, "dev"), 0o755)
	if err := syscall.Mknod(filepath.Join(root, "dev/null"), syscall.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatalf("mknod /dev/null: %v", err)
	}
	os.Rename(filepath.Join(root, "usr/bin/plcmail"), filepath.Join(root, "usr/bin/plcmail.mipsel"))
	os.WriteFile(filepath.Join(root, "usr/bin/plcmail"), []byte("#!/bin/sh\nexec /usr/bin/qemu-mipsel /usr/bin/plcmail.mipsel \"$@\"\n"), 0o755)
	chroot := func(sh string, env ...string) (string, error) {
		cmd := exec.Command("chroot", root, "/bin/sh", "-c", sh)
		cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	// opkg install: postinst on the live system.
	os.Remove(filepath.Join(root, "tmp/procd.log"))
	out, err := chroot("/usr/lib/opkg/info/plcmail.postinst")
	if err != nil {
		t.Fatalf("postinst in the chroot: %v\n%s", err, out)
	}
	t.Logf("postinst:\n%s", out)
	procd := read("tmp/procd.log")
	t.Logf("procd calls:\n%s", procd)
	if _, err := os.Lstat(filepath.Join(root, "etc/rc.d/S95plcmail")); err != nil {
		t.Error("postinst did not enable the service")
	}
	if !strings.Contains(procd, "reload_trigger plcmail") {
		t.Error("start registered no reload trigger for /etc/config/plcmail")
	}
	// The example config's placeholders pass `plcmail check` or not; either
	// way postinst must not start a gateway on a config that fails it.
	checkOut, checkErr := chroot("plcmail check")
	t.Logf("plcmail check on the packaged config: %v\n%s", checkErr, checkOut)
	if checkErr != nil && slices.Contains(strings.Split(procd, "\n"), "open") { // the procd_open_instance line, not a log line containing "open"
		t.Error("service started although plcmail check fails")
	}
	if checkErr != nil && !strings.Contains(out, "plcmail check && /etc/init.d/plcmail start") {
		t.Error("postinst does not tell what to do next")
	}
	// With a password, the packaged example config passes as it is.
	os.WriteFile(filepath.Join(root, "etc/plcmail/upstream.secret"), []byte("app-password\n"), 0o600)
	if out, err := chroot("plcmail check"); err != nil {
		t.Errorf("plcmail check on the packaged config with a password: %v\n%s", err, out)
	}
	if out, err := chroot("plcmail version"); err != nil || !versionOutput("v1.2.3").MatchString(out) {
		t.Errorf("plcmail version in the chroot: %v\n%s", err, out)
	}
	uid := lookupUID(t, filepath.Join(root, "etc/passwd"), "plcmail")
	for _, name := range []string{"etc/plcmail/upstream.secret", "etc/plcmail/spool"} {
		out, _ := chroot("stat -c '%u %a' /" + name)
		if want := strconv.Itoa(int(uid)); !strings.HasPrefix(out, want+" ") {
			t.Errorf("%s: owner and mode %q, want uid %s", name, out, want)
		}
	}
	if out, _ := chroot("stat -c '%u:%g' /etc/plcmail/plcmail.toml"); !strings.HasPrefix(out, "0:") || strings.HasPrefix(out, "0:0") {
		t.Errorf("config owned %q, want root and the plcmail group", out)
	}

	// A valid config (loopback upstream) starts: check the instance procd gets.
	os.WriteFile(filepath.Join(root, "etc/plcmail/plcmail.toml"), loopbackConfig("/etc/plcmail/spool"), 0o640)
	os.Remove(filepath.Join(root, "tmp/procd.log"))
	// As in a firmware image, where every file is root's.
	os.Chown(filepath.Join(root, "etc/plcmail/spool"), 0, 0)
	if out, err := chroot("/etc/init.d/plcmail start"); err != nil {
		t.Fatalf("start with a valid config: %v\n%s", err, out)
	}
	if out, _ := chroot("stat -c %u /etc/plcmail/spool"); strings.TrimSpace(out) != strconv.Itoa(int(uid)) {
		t.Errorf("start left the spool owned by %q, want the plcmail uid %d", out, uid)
	}
	procd = read("tmp/procd.log")
	for _, want := range []string{
		"param command /usr/bin/plcmail -c /etc/plcmail/plcmail.toml serve",
		"param respawn 3600 5 0",
		"param file /etc/plcmail/plcmail.toml",
		"param user plcmail",
		"reload_trigger plcmail",
	} {
		if !strings.Contains(procd, want) {
			t.Errorf("procd calls lack %q:\n%s", want, procd)
		}
	}
	// Switched off in UCI: reload takes the instance away.
	os.WriteFile(filepath.Join(root, "etc/config/plcmail"), []byte("config plcmail 'main'\n\toption enabled '0'\n"), 0o644)
	os.Remove(filepath.Join(root, "tmp/procd.log"))
	chroot("/etc/init.d/plcmail reload")
	if procd = read("tmp/procd.log"); !strings.Contains(procd, "kill plcmail") || strings.Contains(procd, "signal") {
		t.Errorf("reload with enabled=0:\n%s", procd)
	}

	// opkg remove: prerm stops and disables; config, secret and spool stay.
	os.WriteFile(filepath.Join(root, "etc/plcmail/spool/queued-mail"), []byte("x"), 0o600)
	if out, err := chroot("/usr/lib/opkg/info/plcmail.prerm"); err != nil {
		t.Fatalf("prerm: %v\n%s", err, out)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/rc.d/S95plcmail")); err == nil {
		t.Error("prerm left the service enabled")
	}
	if _, err := os.Stat(filepath.Join(root, "etc/plcmail/spool/queued-mail")); err != nil {
		t.Error("prerm touched the spool")
	}
	// opkg upgrade runs prerm with PKG_UPGRADE=1: stopped but still enabled.
	chroot("/usr/lib/opkg/info/plcmail.postinst")
	chroot("/usr/lib/opkg/info/plcmail.prerm", "PKG_UPGRADE=1")
	if _, err := os.Lstat(filepath.Join(root, "etc/rc.d/S95plcmail")); err != nil {
		t.Error("prerm of an upgrade disabled the service")
	}
}

// copyWithLibs copies a dynamically linked host program into root at dst,
// with the shared libraries ldd names, so it runs inside a chroot.
func copyWithLibs(t *testing.T, root, src, dst string) {
	t.Helper()
	cp := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(root, filepath.Dir(to)), 0o755)
		if err := os.WriteFile(filepath.Join(root, to), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cp(src, dst)
	out, err := exec.Command("ldd", src).Output()
	if err != nil {
		return // static
	}
	for _, m := range regexp.MustCompile(`(?m)(/\S+) \(0x`).FindAllStringSubmatch(string(out), -1) {
		cp(m[1], m[1])
	}
}
