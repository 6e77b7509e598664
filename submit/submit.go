// Package submit carries a message from a local user who may not write the
// spool (anyone but root and the gateway's own user) to the running gateway,
// over a Unix socket that every local user may connect to. It is plcmail's
// postdrop: `plcmail send` as an ordinary user (cron mail of a non-root
// user, through the sendmail link) hands the message over and exits 0 only
// once the gateway has answered that it is in the spool, synced to disk.
//
// Who submits comes from the kernel (SO_PEERCRED on Linux), never from what
// the client sends, so a user cannot pose as another one; the handler
// decides what that user may set. The protocol is one exchange per
// connection: the client writes one JSON Request line followed by exactly
// Request.Size message octets; the server answers one JSON Reply line.
package submit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// Request is the header a client sends before the message.
type Request struct {
	// Args are the sendmail command-line options and recipients as given;
	// the handler parses them with the same rules as a direct submission.
	Args []string `json:"args"`
	Size int64    `json:"size"` // octets of message that follow the header line
}

// Reply is the server's one answer. Code is a sysexits.h status: 0 for
// queued, anything else says why not and whether to retry (75).
type Reply struct {
	Code  int    `json:"code"`
	ID    string `json:"id,omitempty"`
	Error string `json:"error,omitempty"`
}

// Peer is the submitting process as the kernel reported it at connect time.
type Peer struct {
	UID, GID, PID int
}

// Handler queues one submission and returns the queue id, or a sysexits
// code with the reason it did not. It must return only once the message is
// durable: the client exits 0 on that answer.
type Handler func(ctx context.Context, p Peer, args []string, msg []byte) (id string, code int, err error)

// Options configure a Server.
type Options struct {
	Path     string        // the socket
	MaxBytes int64         // largest message accepted
	Timeout  time.Duration // for reading one whole request; default 1 minute
	// MaxConns bounds the submissions handled at once (each holds its
	// message in memory); default 8. More connections wait in the backlog.
	MaxConns int
}

// The maximal header line: the options and recipients of one sendmail call.
const maxHeader = 256 << 10

// Exit codes the server itself answers with.
const (
	codeUsage    = 64
	codeDataErr  = 65
	codeTempFail = 75
)

// ErrInUse is returned by Serve when another process answers on the socket.
var ErrInUse = errors.New("another gateway answers on the submission socket")

// Serve answers submissions on opts.Path until ctx is done, then removes the
// socket. The socket is made connectable by every local user (mode 0666):
// that is its purpose; the directory holding it decides who reaches it.
func Serve(ctx context.Context, opts Options, h Handler, log *slog.Logger) error {
	if opts.Timeout <= 0 {
		opts.Timeout = time.Minute
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 8
	}
	if c, err := net.DialTimeout("unix", opts.Path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s: %w", opts.Path, ErrInUse)
	}
	// Left by a gateway that was killed: nobody answers on it.
	os.Remove(opts.Path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: opts.Path, Net: "unix"})
	if err != nil {
		return err
	}
	if err := os.Chmod(opts.Path, 0o666); err != nil {
		l.Close()
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		<-ctx.Done()
		l.Close() // also removes the socket file
	}()
	slots := make(chan struct{}, opts.MaxConns)
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("submission socket", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			c.Close()
			return nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			defer c.Close()
			serveConn(ctx, c, opts, h, log)
		}()
	}
}

func serveConn(ctx context.Context, c *net.UnixConn, opts Options, h Handler, log *slog.Logger) {
	reply := func(r Reply) {
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		json.NewEncoder(c).Encode(r)
	}
	peer, err := peerCred(c)
	if err != nil {
		log.Warn("submission refused: no peer credentials", "err", err)
		reply(Reply{Code: codeTempFail, Error: "the gateway cannot tell who is submitting: " + err.Error()})
		return
	}
	c.SetReadDeadline(time.Now().Add(opts.Timeout))
	br := bufio.NewReaderSize(c, 4096)
	line, err := readLine(br, maxHeader)
	if err != nil {
		reply(Reply{Code: codeUsage, Error: "bad request header: " + err.Error()})
		return
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		reply(Reply{Code: codeUsage, Error: "bad request header: " + err.Error()})
		return
	}
	if req.Size < 0 || req.Size > opts.MaxBytes {
		reply(Reply{Code: codeDataErr, Error: fmt.Sprintf("message of %d octets; at most %d are accepted", req.Size, opts.MaxBytes)})
		return
	}
	msg := make([]byte, req.Size)
	if _, err := io.ReadFull(br, msg); err != nil {
		reply(Reply{Code: codeTempFail, Error: "message cut short: " + err.Error()})
		return
	}
	id, code, err := h(ctx, peer, req.Args, msg)
	if err != nil {
		if code == 0 {
			code = codeTempFail
		}
		log.Info("submission not queued", "uid", peer.UID, "pid", peer.PID, "code", code, "err", err)
		reply(Reply{Code: code, Error: err.Error()})
		return
	}
	log.Info("submission queued", "uid", peer.UID, "pid", peer.PID, "id", id, "size", len(msg))
	reply(Reply{ID: id})
}

func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, fmt.Errorf("header longer than %d octets", max)
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// ErrNotRunning is returned by Send when nobody answers on the socket.
var ErrNotRunning = errors.New("the gateway is not running")

// Send submits msg with the sendmail args through the socket at path and
// returns the server's reply. An error means no reply came: the message may
// not be queued, and the caller must say so (exit 75).
func Send(ctx context.Context, path string, args []string, msg []byte) (Reply, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, errConnRefused) {
			return Reply{}, fmt.Errorf("%w (nobody answers on %s)", ErrNotRunning, path)
		}
		return Reply{}, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(5 * time.Minute))
	}
	hdr, err := json.Marshal(Request{Args: args, Size: int64(len(msg))})
	if err != nil {
		return Reply{}, err
	}
	w := bufio.NewWriter(c)
	w.Write(hdr)
	w.WriteByte('\n')
	w.Write(msg)
	if err := w.Flush(); err != nil {
		// The server may have refused early (too large) and closed: its
		// answer is still worth reading.
		if r, rerr := readReply(c); rerr == nil {
			return r, nil
		}
		return Reply{}, err
	}
	return readReply(c)
}

func readReply(c net.Conn) (Reply, error) {
	var r Reply
	line, err := readLine(bufio.NewReader(c), 64<<10)
	if err != nil {
		return r, fmt.Errorf("no answer from the gateway: %w", err)
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return r, fmt.Errorf("bad answer from the gateway: %w", err)
	}
	return r, nil
}
