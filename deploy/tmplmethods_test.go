package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// overlay runs deploy/tmplmethods/overlay.sh and returns the overlay file.
func overlay(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("sh", filepath.Join(repoRoot(t), "deploy", "tmplmethods", "overlay.sh"), t.TempDir()).CombinedOutput()
	if err != nil {
		t.Fatalf("overlay.sh: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestTemplateOverlay builds with the text/template of router builds. A
// method outside deploy/tmplmethods' list cannot be called (the build is
// what the overlay says), while the fields and the listed methods work:
// alarmmail's tests pass with it, TestTemplateMethods calling each method
// of alarmmail.templateMethods (so the two lists agree), and so do the
// status page's.
func TestTemplateOverlay(t *testing.T) {
	ov := overlay(t)
	prog := t.TempDir()
	os.WriteFile(filepath.Join(prog, "go.mod"), []byte("module probe\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(prog, "main.go"), []byte(`package main

import (
	"fmt"
	"os"
	"text/template"
	"time"
)

func main() {
	d := struct{ T time.Time }{time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	for _, src := range os.Args[1:] {
		err := template.Must(template.New("").Parse(src)).Execute(os.Stdout, d)
		fmt.Printf(" [%v]\n", err)
	}
}
`), 0o644)
	run := func(args ...string) string {
		cmd := exec.Command("go", append(append([]string{"run"}, args...), ".", `{{.T.Format "2006"}}`, `{{.T.Nanosecond}}`)...)
		cmd.Dir = prog
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go run %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if got, want := run(), "2026 [<nil>]\n6 [<nil>]\n"; got != want {
		t.Fatalf("without the overlay:\n%s\nwant\n%s", got, want)
	}
	got := run("-overlay", ov)
	if !strings.HasPrefix(got, "2026 [<nil>]\n") || !strings.Contains(got, "can't evaluate field Nanosecond in type time.Time") {
		t.Errorf("with the overlay:\n%s", got)
	}

	cmd := exec.Command("go", "test", "-overlay", ov, "-count=1", "./alarmmail/", "./web/", "-skip", "TestPageInChromium")
	cmd.Dir = repoRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tests with the overlay: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// TestOverlayRefusesChangedTemplate: overlay.sh fails, rather than build
// a text/template that calls every method again, when the call it replaces
// is missing (a Go release that changed exec.go).
func TestOverlayRefusesChangedTemplate(t *testing.T) {
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	fake := t.TempDir()
	src := filepath.Join(strings.TrimSpace(string(goroot)), "src")
	for _, dir := range []string{"text/template", "html/template"} {
		os.MkdirAll(filepath.Join(fake, "src", dir), 0o755)
		files, _ := filepath.Glob(filepath.Join(src, dir, "*.go"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			b = []byte(strings.ReplaceAll(string(b), "ptr.MethodByName(fieldName)", "ptr.MethodByName(name)"))
			os.WriteFile(filepath.Join(fake, "src", dir, filepath.Base(f)), b, 0o644)
		}
	}
	goSh := filepath.Join(t.TempDir(), "go")
	os.WriteFile(goSh, []byte("#!/bin/sh\n[ \"$1 $2\" = 'env GOROOT' ] && echo "+fake+"\n"), 0o755)
	cmd := exec.Command("sh", filepath.Join(repoRoot(t), "deploy", "tmplmethods", "overlay.sh"), t.TempDir())
	cmd.Env = append(os.Environ(), "GO="+goSh)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "expected one ptr.MethodByName(fieldName), found 0") {
		t.Errorf("overlay.sh on a changed exec.go: %v\n%s", err, out)
	}
}
