package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is the release name, set at build time with
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/plcmail
//
// Without it, the module version recorded by `go install module@version` is
// used, and "dev" for a plain build from a checkout.
var version = "dev"

// commit is the source's git commit, set at build time by the Makefile and
// the OpenWrt feed with
//
//	-ldflags "-X main.commit=$(git describe --always --abbrev=40 --dirty --exclude='*')"
//
// ("-dirty" at the end: built from a tree with uncommitted changes). It is
// used only when the Go toolchain recorded no vcs.revision: Go stamps one
// only where it finds a .git directory, so builds in a git worktree (whose
// .git is a file) and from a source tarball (the OpenWrt SDK's download
// of the release) carry none.
var commit = ""

// buildInfo is what `plcmail version` prints and `serve` logs at start, so a
// bug report names the exact binary.
type buildInfo struct {
	Version  string
	Commit   string // vcs.revision, else main.commit, "unknown" when the build recorded neither
	Modified bool   // built from a tree with uncommitted changes
	Go       string
	Platform string
}

func readBuildInfo() buildInfo {
	bi := buildInfo{Version: version, Commit: "unknown", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if c, dirty := strings.CutSuffix(commit, "-dirty"); c != "" {
		bi.Commit, bi.Modified = c, dirty
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return bi
	}
	if bi.Version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		bi.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			bi.Commit = s.Value
		case "vcs.modified":
			bi.Modified = s.Value == "true"
		}
	}
	return bi
}

func (b buildInfo) commitString() string {
	if b.Modified {
		return b.Commit + " (modified)"
	}
	return b.Commit
}

func cmdVersion(ctx context.Context, e *env, args []string) error {
	fs := subFlags(e, "version")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("version takes no arguments")
	}
	b := readBuildInfo()
	fmt.Fprintf(e.stdout, "plcmail %s\ncommit  %s\ngo      %s %s\n", b.Version, b.commitString(), b.Go, b.Platform)
	return nil
}
