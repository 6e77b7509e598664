//go:build !linux

package bridge

// keepDTR: HUPCL is only cleared on Linux so far (see hupcl_linux.go).
func keepDTR(string) {}
