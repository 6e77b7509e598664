package oauth_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/plcmail/plcmail/oauth"
)

// TestHelperTokenWriter is the child of TestKill9DuringTokenWrite: it
// rewrites the token file in a loop and prints the number of each write
// once WriteStore returned.
func TestHelperTokenWriter(t *testing.T) {
	file := os.Getenv("PLCMAIL_TEST_TOKEN_WRITER")
	if file == "" {
		t.Skip("child process of TestKill9DuringTokenWrite")
	}
	pad := strings.Repeat("x", 64<<10) // big enough that a write is not one syscall
	for n := 1; ; n++ {
		st := &oauth.Stored{RefreshToken: fmt.Sprintf("rt-%d-%s", n, pad), AccessToken: fmt.Sprintf("at-%d", n)}
		if err := oauth.WriteStore(file, st); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(n)
	}
}

// TestKill9DuringTokenWrite kills a process that is rewriting the token
// file, at several points, and checks that the file is always whole and
// at least as new as the last write that returned.
func TestKill9DuringTokenWrite(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "oauth", "smtp.json")
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperTokenWriter$", "-test.v=false")
		cmd.Env = append(os.Environ(), "PLCMAIL_TEST_TOKEN_WRITER="+file)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		last := 0
		for sc.Scan() && last < 20+round*37 {
			n, err := strconv.Atoi(sc.Text())
			if err != nil {
				t.Fatalf("child: %s", sc.Text())
			}
			last = n
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		st, err := oauth.ReadStore(file)
		if err != nil {
			t.Fatalf("round %d: token file unusable after kill -9: %v", round, err)
		}
		var n int
		fmt.Sscanf(st.AccessToken, "at-%d", &n)
		if n < last || !strings.HasPrefix(st.RefreshToken, fmt.Sprintf("rt-%d-", n)) {
			t.Fatalf("round %d: file holds write %d (refresh token of %q...), last completed %d", round, n, st.RefreshToken[:8], last)
		}
		ents, _ := os.ReadDir(filepath.Dir(file))
		if len(ents) > 2 {
			t.Errorf("round %d: %d files in the token directory: killed writers' temporary files pile up", round, len(ents))
		}
		t.Logf("round %d: killed after write %d, file holds %d, %d entries in the directory", round, last, n, len(ents))
	}
}
