package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// makeVar returns the words of the variable name as the makefile file sets
// it with ?= or :=, its backslash-continued lines joined.
func makeVar(t *testing.T, file, name string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	joined := regexp.MustCompile(`\\\n`).ReplaceAllString(string(b), " ")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `[ \t]*[?:]=(.*)$`).FindStringSubmatch(joined)
	if m == nil {
		t.Fatalf("%s does not set %s", file, name)
	}
	return strings.Fields(m[1])
}

// routerGCFlags is the top Makefile's ROUTER_GCFLAGS, one -gcflags
// argument per word.
func routerGCFlags(t *testing.T) []string {
	return makeVar(t, filepath.Join(repoRoot(t), "Makefile"), "ROUTER_GCFLAGS")
}

// wantGCFlagsSetting checks a binary's build settings for the compiler flags
// of the router builds: the go command records only the last -gcflags
// argument, so that one must be ROUTER_GCFLAGS' last word.
func wantGCFlagsSetting(t *testing.T, settings map[string]string) {
	t.Helper()
	flags := routerGCFlags(t)
	if got, want := settings["-gcflags"], flags[len(flags)-1]; got != want {
		t.Errorf("build setting -gcflags = %q, want %q (the last of ROUTER_GCFLAGS)", got, want)
	}
}

// TestFeedGCFlags: the OpenWrt SDK's build (deploy/openwrt/Makefile) uses
// the compiler flags `make openwrt` does, and those turn inlining off only
// outside the packages whose CPU the router build was measured for.
func TestFeedGCFlags(t *testing.T) {
	top := routerGCFlags(t)
	feed := makeVar(t, filepath.Join(repoRoot(t), "deploy", "openwrt", "Makefile"), "PLCMAIL_GCFLAGS")
	if strings.Join(feed, " ") != strings.Join(top, " ") {
		t.Errorf("deploy/openwrt/Makefile PLCMAIL_GCFLAGS\n  %s\nMakefile ROUTER_GCFLAGS\n  %s", strings.Join(feed, " "), strings.Join(top, " "))
	}
	if len(top) == 0 || top[0] != "all=-l" {
		t.Fatalf("ROUTER_GCFLAGS %q does not start with all=-l", top)
	}
	// Inlining back on where the TLS handshake spends its time: without it
	// there, a handshake took four to five times the CPU under qemu-mipsel.
	for _, hot := range []string{"crypto/...=", "math/...=", "runtime=", "github.com/plcmail/plcmail/...="} {
		if !strings.Contains(" "+strings.Join(top[1:], " ")+" ", " "+hot+" ") {
			t.Errorf("ROUTER_GCFLAGS does not turn inlining back on with %s", hot)
		}
	}
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "openwrt", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "$(foreach f,$(PLCMAIL_GCFLAGS),-gcflags=$(f))") {
		t.Error("deploy/openwrt/Makefile does not pass PLCMAIL_GCFLAGS to the build")
	}
}

// TestFeedBuildTags: the SDK feed's GO_PKG_TAGS are the tags `make openwrt`
// builds with (BUILDTAGS and OPENWRT_BUILDTAGS), and cmd/plcmail's tests
// pass with them, so that the nodemo build is tested like the full one.
func TestFeedBuildTags(t *testing.T) {
	root := repoRoot(t)
	top := append(makeVar(t, filepath.Join(root, "Makefile"), "BUILDTAGS"), makeVar(t, filepath.Join(root, "Makefile"), "OPENWRT_BUILDTAGS")...)
	feed := makeVar(t, filepath.Join(root, "deploy", "openwrt", "Makefile"), "GO_PKG_TAGS")
	if strings.Join(feed, " ") != strings.Join(top, " ") {
		t.Errorf("deploy/openwrt/Makefile GO_PKG_TAGS %q, Makefile BUILDTAGS and OPENWRT_BUILDTAGS %q", feed, top)
	}
	if !slices.Contains(top, "nodemo") {
		t.Errorf("OPENWRT_BUILDTAGS lacks nodemo: %q", top)
	}
	if testing.Short() {
		t.Skip("-short: not running cmd/plcmail's tests with the OpenWrt tags")
	}
	cmd := exec.Command("go", "test", "-count=1", "-tags", strings.Join(top, " "), "./cmd/plcmail/")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go test -tags %q ./cmd/plcmail: %v\n%s", strings.Join(top, " "), err, out)
	}
}
