//go:build pprof

package main

import "testing"

// TestServePprofLoopbackOnly: the profiling endpoint of a -tags pprof build
// listens on loopback addresses only.
func TestServePprofLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:0", true},
		{"[::1]:0", true},
		{"0.0.0.0:0", false},
		{":0", false},
		{"localhost:0", false}, // a name could resolve anywhere
		{"192.0.2.1:6060", false},
		{"127.0.0.1", false},
	} {
		err := servePprof(tc.addr)
		if (err == nil) != tc.ok {
			t.Errorf("servePprof(%q) = %v, want ok %v", tc.addr, err, tc.ok)
		}
	}
}
