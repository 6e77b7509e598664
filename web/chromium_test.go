package web

import (
	"bytes"
	"context"
	"image/png"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/testenv"
)

// TestPageInChromium loads the status page, behind basic auth, in a real
// headless Chromium (Debian's chromium): it dumps the DOM the browser built
// and takes a screenshot, kept in $PLCMAIL_TEST_ARTIFACTS when set (CI
// artefacts), else in the test's temporary directory.
func TestPageInChromium(t *testing.T) {
	chromium := testenv.NeedTool(t, "chromium", "chromium")
	st := sampleStatus()
	s, err := Listen(Options{Listen: "127.0.0.1:0", Username: "ops", Password: func() (string, error) { return "pa ss", nil },
		Status: func() Status { return st }}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	dir := os.Getenv("PLCMAIL_TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	url := "http://ops:pa%20ss@" + s.Addr().String() + "/"
	browse := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--user-data-dir=" + t.TempDir(), "--window-size=1280,1100"}, append(args, url)...)
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, chromium, args...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
		}
		return out
	}

	dom := string(browse("--dump-dom"))
	for _, want := range []string{`<table id="links">`, "press-line-1", "DOWN", `<table id="active">`, "oil temp high",
		"dial: connection refused", "&lt;script&gt;alert", "smtp.example.com:587: conn_error 9"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page Chromium rendered lacks %q:\n%s", want, dom)
		}
	}
	if strings.Contains(dom, "<script") {
		t.Errorf("a script element in the rendered page:\n%s", dom)
	}

	shot := filepath.Join(dir, "status-page.png")
	browse("--screenshot=" + shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	// A blank page (an auth failure renders almost nothing) is one colour.
	b := img.Bounds()
	colours := map[uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 7 {
		for x := b.Min.X; x < b.Max.X; x += 7 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[r>>8<<16|g>>8<<8|bl>>8] = true
		}
	}
	if b.Dx() != 1280 || len(colours) < 4 {
		t.Errorf("screenshot %v with %d colours: not the rendered page", b, len(colours))
	}
	t.Logf("screenshot: %s", shot)
}
