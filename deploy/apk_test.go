package deploy

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/plcmail/plcmail/internal/testenv"
)

// needAPK returns apk-tools 3's apk, or skips: Debian 12 has no package of
// it (it builds from source with meson), so CI does not require it.
func needAPK(t *testing.T) string {
	t.Helper()
	apk, err := exec.LookPath("apk")
	if err != nil {
		t.Skip("apk-tools 3 not installed (not packaged for Debian 12; build it from source, deploy/README.md)")
	}
	if out, _ := exec.Command(apk, "--version").Output(); !bytes.HasPrefix(out, []byte("apk-tools 3")) {
		t.Skipf("apk is not apk-tools 3: %s", out)
	}
	return apk
}

// checkAPK checks the .apk `make openwrt` built next to the ipk p: its
// metadata, and, installed with apk itself into a throw-away root, the same
// files with the same modes as the ipk and OpenWrt's conffiles list. For
// MIPS, as root, the install runs the maintainer scripts (apk runs them in
// a chroot of the root: busybox as /bin/sh) and so does the removal.
func checkAPK(t *testing.T, dist, arch string, p ipk) {
	apk := needAPK(t)
	path := filepath.Join(dist, "openwrt", "plcmail_1.2.3-r1_"+arch+".apk")
	dump, err := exec.Command(apk, "adbdump", path).CombinedOutput()
	if err != nil {
		t.Fatalf("apk adbdump: %v\n%s", err, dump)
	}
	for _, re := range []string{
		`(?m)^  name: plcmail$`, `(?m)^  version: 1\.2\.3-r1$`, `(?m)^  arch: ` + regexp.QuoteMeta(arch) + `$`,
		`(?m)^  depends: # 1 items\n    - ca-bundle$`,
		`(?m)^  post-install: \|$`, `(?m)^  post-upgrade: \|$`, `(?m)^  pre-deinstall: \|$`, `(?m)^  pre-upgrade: \|$`,
	} {
		if !regexp.MustCompile(re).Match(dump) {
			t.Errorf("apk metadata does not match %s:\n%s", re, dump[:min(len(dump), 1500)])
		}
	}

	// A stand-in for OpenWrt's ca-bundle, the one dependency.
	stub := t.TempDir()
	caBundle := filepath.Join(t.TempDir(), "ca-bundle.apk")
	if out, err := exec.Command(apk, "mkpkg", "-I", "name:ca-bundle", "-I", "version:1-r1", "-I", "arch:"+arch,
		"-I", "description:stand-in", "-F", stub, "-o", caBundle).CombinedOutput(); err != nil {
		t.Fatalf("apk mkpkg ca-bundle: %v\n%s", err, out)
	}
	root := t.TempDir()
	scripts := arch == "mipsel_24kc" && os.Geteuid() == 0
	if scripts {
		openwrtRoot(t, root)
	}
	args := []string{"add", "--root", root, "--initdb", "--allow-untrusted", "--no-network", "--no-cache", "--arch", arch}
	if !scripts {
		args = append(args, "--no-scripts")
	}
	out, err := exec.Command(apk, append(args, caBundle, path)...).CombinedOutput()
	if err != nil {
		t.Fatalf("apk add: %v\n%s", err, out)
	}
	t.Logf("apk add:\n%s", out)
	for name, e := range p.data {
		fi, err := os.Lstat(filepath.Join(root, name))
		if err != nil {
			t.Errorf("%s not installed: %v", name, err)
			continue
		}
		want := e.mode & (fs.ModePerm | fs.ModeDir)
		if scripts && strings.HasPrefix(name, "etc/plcmail") {
			continue // postinst gives these to plcmail: installIPK checks the result
		}
		if fi.Mode()&(fs.ModePerm|fs.ModeDir) != want {
			t.Errorf("%s: mode %v, want %v as in the ipk", name, fi.Mode(), want)
		}
		if !e.mode.IsDir() {
			if b, _ := os.ReadFile(filepath.Join(root, name)); !bytes.Equal(b, e.body) {
				t.Errorf("%s differs from the ipk's", name)
			}
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "lib/apk/packages/plcmail.conffiles")); !bytes.Equal(b, p.control["conffiles"].body) {
		t.Errorf("lib/apk/packages/plcmail.conffiles = %q, want the ipk's conffiles %q", b, p.control["conffiles"].body)
	}
	if !scripts {
		return
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if !regexp.MustCompile(`(?m)^plcmail:x:\d+:\d+:`).Match(passwd) {
		t.Errorf("post-install made no plcmail user:\n%s", passwd)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/rc.d/S95plcmail")); err != nil {
		t.Error("post-install did not enable the service")
	}
	if fi, err := os.Stat(filepath.Join(root, "etc/plcmail/spool")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("spool: %v %v", fi, err)
	}
	os.WriteFile(filepath.Join(root, "etc/plcmail/spool/queued-mail"), []byte("x"), 0o600)
	out, err = exec.Command(apk, "del", "--root", root, "--no-network", "--no-cache", "plcmail").CombinedOutput()
	if err != nil {
		t.Fatalf("apk del: %v\n%s", err, out)
	}
	t.Logf("apk del:\n%s", out)
	if _, err := os.Lstat(filepath.Join(root, "etc/rc.d/S95plcmail")); err == nil {
		t.Error("pre-deinstall left the service enabled")
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/plcmail")); err == nil {
		t.Error("apk del left the binary")
	}
	if _, err := os.Stat(filepath.Join(root, "etc/plcmail/spool/queued-mail")); err != nil {
		t.Errorf("removing the package lost the spool: %v", err)
	}
}

// openwrtRoot lays out the little of an OpenWrt root that the maintainer
// scripts need when a package manager runs them in a chroot: busybox as
// every command, the account files, the rc.common stand-in.
func openwrtRoot(t *testing.T, root string) {
	bb := testenv.NeedTool(t, "busybox", "busybox")
	etc := filepath.Join(root, "etc")
	os.MkdirAll(etc, 0o755)
	os.WriteFile(filepath.Join(etc, "passwd"), []byte("root:x:0:0:root:/root:/bin/ash\n"), 0o644)
	os.WriteFile(filepath.Join(etc, "group"), []byte("root:x:0:\ndialout:x:20:\n"), 0o644)
	os.WriteFile(filepath.Join(etc, "shadow"), []byte("root:::0:99999:7:::\n"), 0o600)
	rc, _ := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "testdata", "rc.common"))
	os.WriteFile(filepath.Join(etc, "rc.common"), rc, 0o755)
	os.MkdirAll(filepath.Join(root, "tmp"), 0o1777)
	copyWithLibs(t, root, bb, "/bin/busybox")
	list, _ := exec.Command(bb, "--list").Output()
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	for _, applet := range strings.Fields(string(list)) {
		if _, err := os.Lstat(filepath.Join(root, "bin", applet)); err != nil {
			os.Symlink("/bin/busybox", filepath.Join(root, "bin", applet))
		}
	}
	os.MkdirAll(filepath.Join(root, "dev"), 0o755)
	if err := syscall.Mknod(filepath.Join(root, "dev/null"), syscall.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatalf("mknod /dev/null: %v", err)
	}
}
