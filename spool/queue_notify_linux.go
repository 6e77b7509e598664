package spool

import (
	"bytes"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watchSpool tells the delivery loop what other processes change, so that
// it need not list the spool directory every queue.scan_every (which cost
// 4 to 8% of a gateway's core with 50,000 messages queued):
//
//   - flush is called as soon as a Flush request (the flush marker file)
//     appears in dir, so that `plcmail queue flush` takes effect at once,
//     as `postqueue -f` does;
//   - changed gets the names of files linked or renamed into queue/ and of
//     files removed or renamed out of it (plcmail send, plcmail queue
//     delete, and this process's own changes, which the loop knows
//     already), and overflow true when the kernel dropped events: then the
//     loop lists queue/ in full.
//
// Without inotify (or when it fails) the scan every queue.scan_every finds
// the marker and lists queue/ when its modification time changed.
//
// beforeRead, when not nil, is called before each read of the events: a
// test holds the reader there to make the kernel's event queue overflow.
func watchSpool(dir string, flush func(), changed func(ns []note, overflow bool), beforeRead func()) (stop func(), err error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	top, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_CLOSE_WRITE)
	if err == nil {
		_, err = unix.InotifyAddWatch(fd, filepath.Join(dir, dirQueue),
			unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_DELETE|unix.IN_MOVED_FROM)
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Non-blocking, so the runtime poller owns it and Close ends the Read.
	f := os.NewFile(uintptr(fd), "inotify:"+dir)
	go func() {
		buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
		for {
			if beforeRead != nil {
				beforeRead()
			}
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			var ns []note
			wake, overflow := false, false
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				end := off + unix.SizeofInotifyEvent + int(ev.Len)
				if end > n {
					break
				}
				name := bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:end], "\x00")
				switch {
				case ev.Mask&unix.IN_Q_OVERFLOW != 0:
					overflow, wake = true, true
				case ev.Wd == int32(top):
					if string(name) == flushFile {
						wake = true
					}
				default:
					ns = append(ns, note{name: string(name), gone: ev.Mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0})
				}
				off = end
			}
			if len(ns) > 0 || overflow {
				changed(ns, overflow)
			}
			if wake {
				flush()
			}
		}
	}()
	return func() { f.Close() }, nil
}
