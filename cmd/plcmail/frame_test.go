package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runProto runs plcmail in-process with binary stdin and returns stdout,
// stderr and the exit code main would use.
func runProto(t *testing.T, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: bytes.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	err := run(context.Background(), append([]string{"plcmail"}, args...), e)
	code := exitCode(err, &errb)
	return out.String(), errb.String(), code
}

// vectorWires reads the wire bytes of every vector in the shared file.
func vectorWires(t *testing.T) map[string][]byte {
	w, _ := readVectors(t)
	return w
}

// readVectors reads the wire bytes and the number of expected errors of
// every vector in the shared file.
func readVectors(t *testing.T) (wires map[string][]byte, errorCount map[string]int) {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "protocol", "testdata", "vectors.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wires, errorCount = map[string][]byte{}, map[string]int{}
	var name string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) == 3 && fields[0] == "vector":
			name = fields[1]
		case len(fields) == 2 && fields[0] == "wire":
			b, err := hex.DecodeString(fields[1])
			if err != nil {
				t.Fatal(err)
			}
			wires[name] = b
		case len(fields) >= 3 && fields[0] == "expect" && fields[1] == "error":
			errorCount[name]++
		}
	}
	return wires, errorCount
}

func TestFrameMatchesVectors(t *testing.T) {
	wires := vectorWires(t)
	tests := []struct {
		vector string
		args   []string
	}{
		{"event-raise", []string{"event", "--boot", "7", "--seq", "3", "--code", "17", "--event", "raise", "--severity", "alarm",
			"--uptime", "3600", "--value", "i32:42", "--value", "f32:1.5", "--text", "Motor overload"}},
		{"event-clear", []string{"event", "--boot=7", "--seq=4", "--code=17", "--event=clear", "--uptime=3700"}},
		{"hello-empty", []string{"hello", "--boot", "7", "--uptime", "2", "--reset-cause", "1"}},
		{"hello-features", []string{"hello", "--boot", "7", "--uptime", "2", "--reset-cause", "1", "--features", "1"}},
		{"hello-partial", []string{"hello", "--boot", "7", "--uptime", "2", "--reset-cause", "0x08", "--active", "17:alarm", "--active", "300:3", "--active-total", "3"}},
		{"heartbeat", []string{"heartbeat", "--boot", "7", "--uptime", "10", "--active-total", "1"}},
		{"ack-queued", []string{"ack", "--boot", "7", "--seq", "3"}},
		{"ack-duplicate", []string{"ack", "--boot", "7", "--seq", "3", "--result", "duplicate"}},
		{"nak-bad-frame", []string{"nak", "--boot", "0"}},
		{"nak-busy", []string{"nak", "--boot", "7", "--seq", "3", "--reason", "busy"}},
		{"delivery-accepted", []string{"delivery", "--boot", "7", "--seq", "3", "--smtp-code", "250"}},
		{"delivery-failed", []string{"delivery", "--boot", "7", "--seq", "3", "--status", "failed", "--smtp-code", "550"}},
		{"delivery-via-webhook", []string{"delivery", "--boot", "7", "--seq", "3", "--smtp-code", "200", "--via", "1"}},
		{"delivery-via-255", []string{"delivery", "--boot", "7", "--seq", "3", "--smtp-code", "202", "--via", "255"}},
	}
	for _, tt := range tests {
		t.Run(tt.vector, func(t *testing.T) {
			want, ok := wires[tt.vector]
			if !ok {
				t.Fatalf("no vector %s", tt.vector)
			}
			out, errs, code := runProto(t, nil, append([]string{"frame"}, tt.args...)...)
			if code != 0 || out != string(want) {
				t.Fatalf("binary: exit %d, %x (stderr %q), want %x", code, out, errs, want)
			}
			out, _, code = runProto(t, nil, append(append([]string{"frame"}, tt.args...), "--hex", "--delim-before")...)
			if code != 0 || out != "00"+hex.EncodeToString(want)+"\n" {
				t.Fatalf("--hex --delim-before: exit %d, %q", code, out)
			}
		})
	}
}

func TestFrameUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"frame"},
		{"frame", "--boot", "1"},
		{"frame", "alarm"},
		{"frame", "ack", "--text", "hi"},
		{"frame", "event", "--text", strings.Repeat("x", 33)},
		{"frame", "event", "--value", "i32:1", "--value", "i32:2", "--value", "i32:3", "--value", "i32:4", "--value", "i32:5"},
		{"frame", "event", "--value", "42"},
		{"frame", "event", "--severity", "urgent"},
		{"frame", "event", "--boot", "0"},
		{"frame", "event", "--seq", "0"},
		{"frame", "event", "--code", "65536"},
		{"frame", "hello", "--active", "17"},
		{"frame", "hello", "--active", "1:alarm", "--active-total", "0"},
		{"frame", "nak", "--reason", "tired"},
		{"frame", "ack", "extra"},
	} {
		out, errs, code := runProto(t, nil, args...)
		if code != 2 || out != "" || !strings.HasPrefix(errs, "plcmail: ") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and a message", args, code, out, errs)
		}
	}
	out, _, code := runProto(t, nil, "frame", "--help")
	if code != 0 || !strings.Contains(out, "usage: plcmail frame TYPE") {
		t.Errorf("--help: exit %d, %q", code, out)
	}
}

// decodeLines runs plcmail decode and parses its JSON lines.
func decodeLines(t *testing.T, in []byte, args ...string) ([]map[string]any, int) {
	t.Helper()
	out, errs, code := runProto(t, in, append([]string{"decode"}, args...)...)
	var objs []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v (stderr %q)", line, err, errs)
		}
		objs = append(objs, m)
	}
	return objs, code
}

func TestFrameDecodeRoundTrip(t *testing.T) {
	var stream []byte
	for _, args := range [][]string{
		{"frame", "hello", "--boot", "9", "--delim-before", "--active", "17:critical", "--active", "18:info", "--active-total", "5", "--features", "1"},
		{"frame", "event", "--boot", "9", "--seq", "2", "--code", "17", "--value", "u32:4000000000", "--value", "bool:true", "--value", "f32:-0.25", "--text", `Tank "3" <hot>`},
		{"frame", "heartbeat", "--boot", "9", "--uptime", "99"},
		{"frame", "nak", "--boot", "9", "--seq", "2", "--reason", "malformed"},
		{"frame", "delivery", "--boot", "9", "--seq", "2", "--status", "failed", "--smtp-code", "550"},
		{"frame", "delivery", "--boot", "9", "--seq", "2", "--smtp-code", "200", "--via", "3"},
	} {
		out, errs, code := runProto(t, nil, args...)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, errs)
		}
		stream = append(stream, out...)
	}
	objs, code := decodeLines(t, stream)
	if code != 0 || len(objs) != 6 {
		t.Fatalf("exit %d, %d objects: %v", code, len(objs), objs)
	}
	got, _ := json.Marshal(objs)
	for _, want := range []string{
		`"active":[{"code":17,"severity":"critical"},{"code":18,"severity":"info"}],"active_total":5`,
		`"boot":9,"features":1,"offset"`,
		`"values":["u32:4000000000","bool:true","f32:-0.25"]`,
		`"text":"Tank \"3\" \u003chot\u003e"`,
		`"event":"raise","offset":`,
		`"type":"heartbeat","uptime":99`,
		`"reason":"malformed"`,
		`"smtp_code":550,"status":"failed"`,
		`"smtp_code":200,"status":"accepted","type":"delivery","via":3}`,
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("decoded %s\nlacks %s", got, want)
		}
	}
	if objs[0]["offset"].(float64) != 1 {
		t.Errorf("hello offset %v, want 1 (after the leading delimiter)", objs[0]["offset"])
	}
}

func TestDecodeErrors(t *testing.T) {
	wires, errorCount := readVectors(t)
	var in []byte
	in = append(in, wires["garbage-before-frame"]...) // bad-cobs at 0, event at 12
	in = append(in, wires["unknown-type"]...)         // unknown-type with its header
	in = append(in, wires["ack-queued"][:4]...)       // incomplete at the end
	objs, code := decodeLines(t, in)
	if code != 0 || len(objs) != 4 {
		t.Fatalf("exit %d, %v", code, objs)
	}
	if objs[0]["error"] != "bad-cobs" || objs[0]["offset"].(float64) != 0 {
		t.Errorf("first %v", objs[0])
	}
	if objs[1]["type"] != "event" || objs[1]["offset"].(float64) != 12 {
		t.Errorf("second %v", objs[1])
	}
	if objs[2]["error"] != "unknown-type" || objs[2]["type"] != "type-0x04" || objs[2]["boot"].(float64) != 7 || objs[2]["seq"].(float64) != 9 {
		t.Errorf("third %v", objs[2])
	}
	if objs[3]["error"] != "incomplete" || objs[3]["bytes"].(float64) != 4 || objs[3]["offset"].(float64) != float64(len(in)-4) {
		t.Errorf("fourth %v", objs[3])
	}
	if _, code := decodeLines(t, in, "--strict"); code != 1 {
		t.Errorf("--strict with errors: exit %d, want 1", code)
	}
	if _, code := decodeLines(t, wires["two-frames"], "--strict"); code != 0 {
		t.Errorf("--strict without errors: exit %d, want 0", code)
	}

	// Every vector: decode reports the same number of errors as it expects.
	dir := t.TempDir()
	for name, wire := range wires {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, wire, 0o644); err != nil {
			t.Fatal(err)
		}
		objs, code := decodeLines(t, nil, path)
		if code != 0 {
			t.Errorf("%s: exit %d", name, code)
		}
		errs := 0
		for _, o := range objs {
			if _, ok := o["error"]; ok {
				errs++
			}
		}
		want := errorCount[name]
		if name == "incomplete-at-end" {
			want = 1 // decode reports the held-back bytes at the end of input
		}
		if errs != want {
			t.Errorf("%s: %d error lines: %v", name, errs, objs)
		}
	}

	if _, errs, code := runProto(t, nil, "decode", filepath.Join(dir, "does-not-exist")); code != 1 || !strings.Contains(errs, "does-not-exist") {
		t.Errorf("missing file: exit %d, %q", code, errs)
	}
	if _, _, code := runProto(t, nil, "decode", "a", "b"); code != 2 {
		t.Errorf("two files: exit %d, want 2", code)
	}
}

func TestDecodeHex(t *testing.T) {
	out, _, _ := runProto(t, nil, "frame", "ack", "--boot", "7", "--seq", "3", "--hex")
	objs, code := decodeLines(t, []byte("  "+out[:6]+"\n"+out[6:]), "--hex")
	if code != 0 || len(objs) != 1 || objs[0]["type"] != "ack" || objs[0]["result"] != "queued" {
		t.Fatalf("exit %d, %v", code, objs)
	}
	if _, errs, code := runProto(t, []byte("zz"), "decode", "--hex"); code != 1 || !strings.Contains(errs, "not hex") {
		t.Fatalf("bad hex: exit %d, %q", code, errs)
	}
}
