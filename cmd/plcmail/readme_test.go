package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/spool"
)

// TestREADMECommands runs every plcmail command line that README.md shows in
// a code block, against a sandbox gateway (temporary spool, in-process TLS
// upstream), so that the README cannot drift from the binary: a renamed
// command or flag fails here with the README line that shows it. Commands of
// other programs must be listed in readmeOtherCommands with the test that
// covers them.
func TestREADMECommands(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := readmeCodeLines(string(readme))
	if len(lines) < 10 {
		t.Fatalf("found only %d command lines in README.md code blocks; is the parser broken?", len(lines))
	}

	u := mailertest.NewUpstream(t, mailertest.Options{})
	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	conf := c.write(t)

	// One queued message for "queue delete ID", and a capture file for
	// "plcmail decode capture.bin".
	sp, err := spool.Open(c.Spool, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := sp.Enqueue(spool.Submission{Envelope: spool.Envelope{From: "a@example.com", To: []string{"b@example.com"}},
		Data: []byte("Subject: x\r\n\r\nx\r\n"), Source: "test"})
	sp.Close()
	if err != nil {
		t.Fatal(err)
	}
	capture := filepath.Join(t.TempDir(), "capture.bin")
	var f protocol.Frame
	f.Version, f.Type, f.Boot = protocol.Version, protocol.TypeHeartbeat, 1
	wire, _ := protocol.AppendEncoded([]byte{0}, &f)
	os.WriteFile(capture, wire, 0o644)

	ran := 0
	for _, line := range lines {
		for _, pipeline := range splitCommands(line) {
			var stdin string
			for i, words := range pipeline {
				args, ok := plcmailArgs(words)
				if !ok {
					if i == 0 && !coveredElsewhere(words) {
						t.Errorf("README shows %q: not a plcmail command and not in readmeOtherCommands; add a test for it", line)
					}
					if len(words) >= 2 && words[0] == "echo" {
						stdin = strings.Join(words[1:], " ") + "\n"
					}
					continue
				}
				if len(args) > 0 && args[0] == "demo" {
					continue // TestDemoGoRun runs exactly `go run ./cmd/plcmail demo`
				}
				if len(args) > 0 && args[0] == "login" {
					continue // needs [upstream.oauth] and a sign-in: TestOAuthGatewayLifecycle runs it
				}
				for j, a := range args {
					switch a {
					case "ID":
						args[j] = id
					case "capture.bin":
						args[j] = capture
					case "configs/local-test.toml":
						args[j] = "../../configs/local-test.toml"
					}
				}
				if !hasConfigFlag(args) {
					args = append([]string{"-c", conf}, args...)
				}
				r := runCLI(t, stdin, append([]string{"plcmail"}, args...)...)
				ran++
				want := 0
				if args[len(args)-1] == "status" {
					want = 1 // documented: exit 1 when no gateway runs
				}
				if r.code != want {
					t.Errorf("README line %q: exit %d, want %d\nstdout: %s\nstderr: %s", line, r.code, want, r.stdout, r.stderr)
				}
				stdin = r.stdout // the next command of a pipeline reads it
			}
		}
	}
	if ran < 10 {
		t.Errorf("ran only %d plcmail commands from README.md", ran)
	}
	if len(u.Messages()) == 0 {
		t.Error("README's `plcmail test --to` sent nothing upstream")
	}
}

// readmeOtherCommands are the non-plcmail commands README.md shows, each
// with what exercises it.
var readmeOtherCommands = map[string]string{
	"go test":                  ".ci/run runs exactly the README's test command",
	"make":                     "deploy/deploy_test.go TestMakeCrossTargets, TestMakeCrossBuild, TestMakeInstall",
	"sh deploy":                "deploy/deploy_test.go TestInstall*",
	"sudoedit":                 "editing a file: nothing of ours",
	"sh -c":                    "writing the secret file: config tests cover reading it",
	"install -m":               "creating the secret file: config tests cover its permissions",
	"systemctl":                "deploy/deploy_test.go TestSystemdUnitVerify (systemd-analyze verify)",
	"bash bench":               "bench/bench_test.go checks the script's syntax and runs its serial harness",
	"BENCH_QUICK=1 bash bench": "the same script in quick mode",
	"timeout 30":               "capturing a serial port: the decode of the capture runs here",
	"stty -F":                  "putting a serial port in raw mode: nothing of ours",
	"install -m 600 -o":        "creating the secret file owned by the gateway's user: TestCheckSecretReadableByServiceUser",
	"echo":                     "input for the next command of the pipeline",
	"journalctl":               "reading the log: nothing of ours",
	"/etc/init.d/":             "deploy/deploy_test.go TestOpenWrtInitScript",
	"go run ./cmd/":            "TestDemoGoRun",
}

func coveredElsewhere(words []string) bool {
	if len(words) > 0 && words[0] == "sudo" {
		words = words[1:]
	}
	cmd := strings.Join(words, " ")
	for prefix := range readmeOtherCommands {
		if strings.HasPrefix(cmd, prefix) {
			return true
		}
	}
	return false
}

// readmeCodeLines returns the lines of fenced code blocks that look like
// shell commands (not TOML, not program output).
func readmeCodeLines(md string) []string {
	var out []string
	in, lang := false, ""
	for _, raw := range strings.Split(md, "\n") {
		l := strings.TrimSpace(raw)
		if strings.HasPrefix(l, "```") {
			in, lang = !in, strings.TrimPrefix(l, "```")
			continue
		}
		if !in {
			continue
		}
		if lang == "sh" || strings.HasPrefix(l, "$ ") {
			l = strings.TrimPrefix(l, "$ ")
			if l = stripShellComment(l); l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}

var commentRE = regexp.MustCompile(`\s{2,}#.*$|^#.*$`)

func stripShellComment(l string) string { return strings.TrimSpace(commentRE.ReplaceAllString(l, "")) }

// splitCommands splits a shell line into command lists at ; && and ||, and
// each into the words of its pipeline stages, dropping redirections. It
// knows single and double quotes, which is all the README uses.
func splitCommands(line string) [][][]string {
	var lists [][][]string
	var stages [][]string
	var words []string
	var cur strings.Builder
	inWord, quote, redirect := false, byte(0), false
	endWord := func() {
		if inWord && !redirect {
			words = append(words, cur.String())
		}
		if inWord {
			redirect = false
		}
		cur.Reset()
		inWord = false
	}
	endStage := func() {
		endWord()
		if len(words) > 0 {
			stages = append(stages, words)
		}
		words = nil
	}
	endList := func() {
		endStage()
		if len(stages) > 0 {
			lists = append(lists, stages)
		}
		stages = nil
	}
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case quote != 0:
			if ch == quote {
				quote = 0
			} else {
				cur.WriteByte(ch)
			}
		case ch == '\'' || ch == '"':
			quote, inWord = ch, true
		case ch == ' ' || ch == '\t':
			endWord()
		case ch == ';':
			endList()
		case ch == '&' && i+1 < len(line) && line[i+1] == '&', ch == '|' && i+1 < len(line) && line[i+1] == '|':
			endList()
			i++
		case ch == '|':
			endStage()
		case ch == '>' || ch == '<':
			endWord()
			redirect = true
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	endList()
	return lists
}

// plcmailArgs returns the arguments after the program name when words run
// plcmail (directly, with sudo, or through go run).
func plcmailArgs(words []string) ([]string, bool) {
	if len(words) > 0 && words[0] == "sudo" {
		words = words[1:]
	}
	switch {
	case len(words) >= 1 && words[0] == "plcmail":
		return append([]string(nil), words[1:]...), true
	case len(words) >= 3 && words[0] == "go" && words[1] == "run" && words[2] == "./cmd/plcmail":
		return append([]string(nil), words[3:]...), true
	}
	return nil, false
}

func hasConfigFlag(args []string) bool {
	for _, a := range args {
		if a == "-c" {
			return true
		}
	}
	return false
}

func TestSplitCommands(t *testing.T) {
	got := splitCommands(`echo "Subject: a b" | plcmail send -t x@y > /dev/null; timeout 3 cat a > b && plcmail decode b`)
	want := [][][]string{
		{{"echo", "Subject: a b"}, {"plcmail", "send", "-t", "x@y"}},
		{{"timeout", "3", "cat", "a"}},
		{{"plcmail", "decode", "b"}},
	}
	if g, w := strings.Join(flatten(got), "|"), strings.Join(flatten(want), "|"); g != w {
		t.Errorf("got %s\nwant %s", g, w)
	}
}

func flatten(lists [][][]string) []string {
	var out []string
	for _, l := range lists {
		for _, s := range l {
			out = append(out, strings.Join(s, "_"))
		}
		out = append(out, ";")
	}
	return out
}

// TestREADMESectionReferences checks that every README section a message or
// comment of the gateway's source points to (`README, "Section"`) is a
// heading of README.md (a reference may name its start only), so that a user
// told to read a section finds it: login once sent users to a section named
// "Pointing plcmail at your mail provider", which does not exist.
func TestREADMESectionReferences(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var headings []string
	for _, l := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(l, "#") {
			headings = append(headings, strings.TrimSpace(strings.TrimLeft(l, "#")))
		}
	}
	refRE := regexp.MustCompile(`README, \\?"([^"\\]+)\\?"`)
	found := 0
	err = filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "firmware-sketch") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, l := range strings.Split(string(src), "\n") {
			for _, m := range refRE.FindAllStringSubmatch(l, -1) {
				found++
				ok := false
				for _, h := range headings {
					ok = ok || strings.HasPrefix(h, m[1])
				}
				if !ok {
					t.Errorf("%s:%d: refers to README section %q, which README.md has no heading for", path, i+1, m[1])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Fatal("found no README references in the source; is the pattern broken?")
	}
}
