package upstream_test

import (
	"strings"
	"testing"

	"github.com/plcmail/plcmail/upstream"
)

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "127.0.0.1": true, "127.1.2.3": true, "::1": true, "[::1]": true,
		"smtp.example.com": false, "10.0.0.1": false, "localhost.example.com": false, "": false,
	} {
		if got := upstream.IsLoopbackHost(host); got != want {
			t.Errorf("IsLoopbackHost(%q) = %v", host, got)
		}
	}
}

func TestParseFingerprint(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	colon := strings.TrimSuffix(strings.Repeat("AB:", 32), ":")
	for _, s := range []string{hex, colon, "sha256:" + hex, "SHA256:" + colon} {
		fp, err := upstream.ParseFingerprint(s)
		if err != nil || fp[0] != 0xab || fp[31] != 0xab {
			t.Errorf("ParseFingerprint(%q) = %x, %v", s, fp, err)
		}
	}
	for _, s := range []string{"", "ab", strings.Repeat("zz", 32), hex + "00"} {
		if _, err := upstream.ParseFingerprint(s); err == nil {
			t.Errorf("ParseFingerprint(%q) accepted", s)
		}
	}
}
