package submit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func startServer(t *testing.T, h Handler) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "submit.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, Options{Path: path, MaxBytes: 1000}, h, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			break
		}
		if i > 500 {
			t.Fatal("server did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return path
}

// TestRoundTrip: the handler gets the args and bytes as sent and the
// caller's uid from the kernel; its answer comes back; the socket is open
// to every local user.
func TestRoundTrip(t *testing.T) {
	var got Peer
	var gotArgs []string
	var gotMsg []byte
	path := startServer(t, func(ctx context.Context, p Peer, args []string, msg []byte) (string, int, error) {
		got, gotArgs, gotMsg = p, args, msg
		if bytes.Contains(msg, []byte("refuse")) {
			return "", 65, errors.New("no recipients")
		}
		return "ID1", 0, nil
	})
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o666 {
		t.Errorf("socket mode: %v %v", fi, err)
	}
	msg := []byte("Subject: x\r\n\r\n\x00binary\n.\n")
	r, err := Send(context.Background(), path, []string{"-t", "-f", "x@y"}, msg)
	if err != nil || r.Code != 0 || r.ID != "ID1" {
		t.Fatalf("Send: %+v %v", r, err)
	}
	if got.UID != os.Getuid() || got.PID != os.Getpid() || strings.Join(gotArgs, " ") != "-t -f x@y" || !bytes.Equal(gotMsg, msg) {
		t.Errorf("handler saw %+v %q %q", got, gotArgs, gotMsg)
	}
	r, err = Send(context.Background(), path, nil, []byte("refuse"))
	if err != nil || r.Code != 65 || r.Error != "no recipients" {
		t.Errorf("refused: %+v %v", r, err)
	}
	// Larger than MaxBytes: refused before it is read.
	r, err = Send(context.Background(), path, nil, bytes.Repeat([]byte("x"), 5000))
	if err != nil || r.Code != 65 {
		t.Errorf("too large: %+v %v", r, err)
	}
}

// TestBadClients: a header that is not JSON, or a message cut short, gets
// a refusal and never reaches the handler.
func TestBadClients(t *testing.T) {
	called := false
	path := startServer(t, func(context.Context, Peer, []string, []byte) (string, int, error) {
		called = true
		return "x", 0, nil
	})
	for _, in := range []string{"not json\n", `{"args":[],"size":10}` + "\nshort"} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(in))
		c.(*net.UnixConn).CloseWrite()
		r, err := readReply(c)
		c.Close()
		if err != nil || r.Code == 0 {
			t.Errorf("%q: %+v %v", in, r, err)
		}
	}
	if called {
		t.Error("handler called for a bad request")
	}
}

// TestNotRunning: no server is ErrNotRunning, which send turns into 75; a
// second server does not take the socket of one that runs.
func TestNotRunning(t *testing.T) {
	_, err := Send(context.Background(), filepath.Join(t.TempDir(), "none.sock"), nil, []byte("x"))
	if !errors.Is(err, ErrNotRunning) {
		t.Errorf("no server: %v", err)
	}
	path := startServer(t, func(context.Context, Peer, []string, []byte) (string, int, error) { return "x", 0, nil })
	err = Serve(context.Background(), Options{Path: path, MaxBytes: 10}, nil, slog.New(slog.DiscardHandler))
	if !errors.Is(err, ErrInUse) {
		t.Errorf("second server: %v", err)
	}
	if r, err := Send(context.Background(), path, nil, []byte("x")); err != nil || r.ID != "x" {
		t.Errorf("first server after the second tried: %+v %v", r, err)
	}
}
