package main

import (
	"regexp"
	"runtime"
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
	if r := runCLI(t, "", "plcmail", "version", "extra"); r.code != 2 {
		t.Errorf("extra argument: %+v", r)
	}
}
