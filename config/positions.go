package config

import (
	"regexp"
	"strconv"
	"strings"
)

// positions maps key paths to the line that sets them. BurntSushi/toml knows
// key positions internally but does not export them, and "name the key and the
// line" is the one thing a user needs from a config error, so we scan the file
// ourselves. The scanner understands tables, arrays of tables, dotted keys,
// and multi-line strings and arrays well enough to never mistake a value for a
// key; it does not validate TOML (toml.Decode does that).
type positions struct {
	exact map[string]int   // "serial[1].device" -> line
	loose map[string][]int // "serial.device" -> lines, for toml's LastKey which has no indexes
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

func indexPositions(data []byte) *positions {
	p := &positions{exact: map[string]int{}, loose: map[string][]int{}}
	counts := map[string]int{}
	table := ""
	lines := strings.Split(string(data), "\n")
	inMulti := "" // closing delimiter of a multi-line string we are inside
	depth := 0    // bracket depth of a multi-line array value
	for i, raw := range lines {
		ln := i + 1
		line := raw
		if inMulti != "" {
			if idx := strings.Index(line, inMulti); idx >= 0 {
				line = line[idx+3:]
				inMulti = ""
				depth += bracketDelta(line, &inMulti)
			}
			continue
		}
		if depth > 0 {
			depth += bracketDelta(line, &inMulti)
			continue
		}
		t := strings.TrimSpace(stripComment(line))
		if t == "" {
			continue
		}
		if strings.HasPrefix(t, "[[") {
			name := cleanKey(strings.TrimSuffix(strings.TrimPrefix(t, "[["), "]]"))
			name = p.resolveParent(name, counts)
			idx := counts[name]
			counts[name] = idx + 1
			table = name + "[" + strconv.Itoa(idx) + "]"
			p.add(table, ln)
			continue
		}
		if strings.HasPrefix(t, "[") {
			name := cleanKey(strings.TrimSuffix(strings.TrimPrefix(t, "["), "]"))
			table = p.resolveParent(name, counts)
			p.add(table, ln)
			continue
		}
		k, rest, ok := strings.Cut(t, "=")
		if !ok {
			continue
		}
		key := cleanKey(k)
		if table != "" {
			key = table + "." + key
		}
		// A dotted key (oauth.client_id = ...) also defines its tables,
		// which an "unknown key" or wrong-type error may name.
		for i := len(table) + 1; i < len(key); i++ {
			if key[i] == '.' {
				if _, ok := p.exact[key[:i]]; !ok {
					p.exact[key[:i]] = ln
				}
			}
		}
		p.add(key, ln)
		depth += bracketDelta(rest, &inMulti)
	}
	return p
}

// resolveParent turns "smtp.account" into "smtp.account" and, inside an array
// of tables, "alarm.labels" into "alarm[2].labels" (the latest element).
func (p *positions) resolveParent(name string, counts map[string]int) string {
	parts := strings.Split(name, ".")
	out := ""
	for i, part := range parts {
		if i > 0 {
			out += "."
		}
		out += part
		if i < len(parts)-1 {
			if n, ok := counts[out]; ok && n > 0 {
				out += "[" + strconv.Itoa(n-1) + "]"
			}
		}
	}
	return out
}

func (p *positions) add(path string, line int) {
	if _, dup := p.exact[path]; !dup {
		p.exact[path] = line
	}
	l := indexRE.ReplaceAllString(path, "")
	p.loose[l] = append(p.loose[l], line)
}

func (p *positions) has(path string) bool {
	if p == nil {
		return false
	}
	_, ok := p.exact[path]
	return ok
}

// line2 finds the line for a validation path. For a key the file does not set
// it falls back to its table, so "missing key" errors still point somewhere.
func (p *positions) line2(path string) int {
	if p == nil {
		return 0
	}
	for path != "" {
		if l, ok := p.exact[path]; ok {
			return l
		}
		// "upstream.tls_fingerprints[1]" -> "upstream.tls_fingerprints"
		if i := strings.LastIndexAny(path, ".["); i > 0 {
			path = path[:i]
		} else {
			return 0
		}
	}
	return 0
}

// cleanKey normalises `a . "b"` to `a.b`.
func cleanKey(k string) string {
	parts := strings.Split(k, ".")
	for i, part := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(part), `"'`)
	}
	return strings.Join(parts, ".")
}

func stripComment(s string) string {
	inStr := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inStr != 0:
			if c == '\\' && inStr == '"' {
				i++
			} else if c == inStr {
				inStr = 0
			}
		case c == '"' || c == '\'':
			inStr = c
		case c == '#':
			return s[:i]
		}
	}
	return s
}

// bracketDelta returns how many '[' minus ']' outside strings the value text
// opens, and sets *multi when the text opens a multi-line string it does not
// close.
func bracketDelta(s string, multi *string) int {
	d := 0
	for i := 0; i < len(s); i++ {
		if strings.HasPrefix(s[i:], `"""`) || strings.HasPrefix(s[i:], `'''`) {
			delim := s[i : i+3]
			end := strings.Index(s[i+3:], delim)
			if end < 0 {
				*multi = delim
				return d
			}
			i += 3 + end + 2
			continue
		}
		switch c := s[i]; c {
		case '"', '\'':
			for j := i + 1; j < len(s); j++ {
				if c == '"' && s[j] == '\\' {
					j++
					continue
				}
				if s[j] == c {
					i = j
					break
				}
				if j == len(s)-1 {
					i = j
				}
			}
		case '#':
			return d
		case '[':
			d++
		case ']':
			d--
		}
	}
	return d
}
