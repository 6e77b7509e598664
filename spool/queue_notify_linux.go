package spool

import (
	"bytes"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watchFlush calls wake as soon as a Flush request (the flush marker file)
// appears in dir, so that `plcmail queue flush` takes effect at once, as
// `postqueue -f` does, instead of at the next scan. Without inotify (or
// when it fails) the scan every queue.scan_every still finds the marker.
func watchFlush(dir string, wake func()) (stop func(), err error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_CLOSE_WRITE); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Non-blocking, so the runtime poller owns it and Close ends the Read.
	f := os.NewFile(uintptr(fd), "inotify:"+dir)
	go func() {
		buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				end := off + unix.SizeofInotifyEvent + int(ev.Len)
				if end > n {
					break
				}
				name := bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:end], "\x00")
				if string(name) == flushFile || ev.Mask&unix.IN_Q_OVERFLOW != 0 {
					wake()
				}
				off = end
			}
		}
	}()
	return func() { f.Close() }, nil
}
