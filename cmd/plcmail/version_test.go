package main

import (
	"regexp"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	r := runCLI(t, "", "plcmail", "version")
	re := regexp.MustCompile(`^plcmail (dev|v\S+)\ncommit  (unknown|[0-9a-f]{40}( \(modified\))?)\ngo      ` + regexp.QuoteMeta(runtime.Version()) + ` \w+/\w+\n$`)
	if r.code != 0 || !re.MatchString(r.stdout) {
		t.Errorf("version: %+v", r)
	}
	// What -ldflags "-X main.version=v1.2.3" sets.
	defer func(v string) { version = v }(version)
	version = "v1.2.3"
	if r := runCLI(t, "", "plcmail", "version"); r.stdout[:len("plcmail v1.2.3\n")] != "plcmail v1.2.3\n" {
		t.Errorf("with version set: %q", r.stdout)
	}
	// What the Makefile's -X main.commit sets, for builds where Go records no
	// vcs.revision (a git worktree, a source tarball). The test binary has
	// none either: go test does not stamp it.
	defer func(c string) { commit = c }(commit)
	for _, tc := range []struct{ stamp, want string }{
		{"0123456789abcdef0123456789abcdef01234567", "commit  0123456789abcdef0123456789abcdef01234567\n"},
		{"0123456789abcdef0123456789abcdef01234567-dirty", "commit  0123456789abcdef0123456789abcdef01234567 (modified)\n"},
		{"", "commit  unknown\n"},
	} {
		commit = tc.stamp
		if r := runCLI(t, "", "plcmail", "version"); !strings.Contains(r.stdout, tc.want) {
			t.Errorf("commit stamped %q: %q, want %q", tc.stamp, r.stdout, tc.want)
		}
	}
	if r := runCLI(t, "", "plcmail", "version", "extra"); r.code != 2 {
		t.Errorf("extra argument: %+v", r)
	}
}
