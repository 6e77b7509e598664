package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// decoder fills a Config from a parsed TOML document one key at a time.
//
// toml.Decode stops at the first value whose type does not fit, which is
// what made `plcmail check` report one problem per run. The decoder instead
// walks the Go structs and the document together: every key is decoded on
// its own (toml.PrimitiveDecode), so a wrong type, a bad duration or an
// unknown key is recorded with its exact path ("serial[1].baud") and the walk
// goes on with the next key. A key that failed keeps its default and is
// marked bad, so that validation does not pile a second, misleading
// complaint ("required") on the same key.
//
// New sections need nothing here: a struct field with a toml tag is walked
// whether it is a table (struct or *struct) or an array of tables ([]struct).
type decoder struct {
	md   toml.MetaData
	file string
	pos  *positions
	errs Errors
	bad  map[string]bool // key paths that failed to decode
}

// errAt records a problem at a key path and marks the key bad.
func (d *decoder) errAt(path, format string, args ...any) {
	d.bad[path] = true
	d.errs = append(d.errs, &Error{File: d.file, Line: d.pos.line2(path), Key: path, Msg: fmt.Sprintf(format, args...)})
}

// table decodes the keys of one TOML table into the struct rv.
func (d *decoder) table(keys map[string]toml.Primitive, rv reflect.Value, path string) {
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	slices.Sort(names) // errors on one line stay in a stable order
	for _, k := range names {
		kpath := k
		if path != "" {
			kpath = path + "." + k
		}
		idx, ok := fieldIndex(rv.Type(), k)
		if !ok {
			d.unknown(keys[k], rv.Type(), k, kpath)
			continue
		}
		d.value(keys[k], rv.FieldByIndex(idx), kpath)
	}
}

// value decodes p into rv, the field at path.
func (d *decoder) value(p toml.Primitive, rv reflect.Value, path string) {
	t := rv.Type()
	switch {
	case isTable(t):
		d.subTable(p, rv, path)
	case t.Kind() == reflect.Pointer && isTable(t.Elem()):
		if rv.IsNil() {
			rv.Set(reflect.New(t.Elem()))
		}
		d.subTable(p, rv.Elem(), path)
	case t.Kind() == reflect.Slice && (isTable(t.Elem()) || t.Elem().Kind() == reflect.Pointer && isTable(t.Elem().Elem())):
		if isMap(d.raw(p)) && !strings.Contains(path, "[") {
			// The common slip: [serial] for [[serial]].
			d.errAt(path, "must be an array of tables: write [[%s]], not [%s]", path, path)
			return
		}
		var elems []toml.Primitive
		if err := d.md.PrimitiveDecode(p, &elems); err != nil {
			d.typeError(p, t, path, err)
			return
		}
		s := reflect.MakeSlice(t, len(elems), len(elems))
		for i, e := range elems {
			d.value(e, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		rv.Set(s)
	default:
		d.leaf(p, rv, path)
	}
}

func (d *decoder) subTable(p toml.Primitive, rv reflect.Value, path string) {
	// toml v1.6.0 decodes a non-table into a map as an empty map, without
	// an error: `gateway = 5` would pass unnoticed.
	if raw := d.raw(p); !isMap(raw) {
		d.errAt(path, "must be %s, not %s", describeGo(rv.Type()), describeTOML(raw))
		return
	}
	var keys map[string]toml.Primitive
	if err := d.md.PrimitiveDecode(p, &keys); err != nil {
		d.typeError(p, rv.Type(), path, err)
		return
	}
	d.table(keys, rv, path)
}

// leaf decodes a value that is not a table. It decodes into a fresh value
// so that a failure leaves the default in place.
func (d *decoder) leaf(p toml.Primitive, rv reflect.Value, path string) {
	t := rv.Type()
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		// BurntSushi/toml hands integers and booleans to UnmarshalText
		// as text; the contract wants durations written as strings.
		if raw := d.raw(p); raw != nil {
			if _, ok := raw.(string); !ok {
				d.errAt(path, "must be %s, not %s", describeGo(t), describeTOML(raw))
				return
			}
		}
	}
	v := reflect.New(t)
	if err := d.md.PrimitiveDecode(p, v.Interface()); err != nil {
		d.typeError(p, t, path, err)
		return
	}
	rv.Set(v.Elem())
}

func (d *decoder) raw(p toml.Primitive) any {
	var raw any
	if err := d.md.PrimitiveDecode(p, &raw); err != nil {
		return nil
	}
	return raw
}

// badTypeRE matches BurntSushi/toml's type-mismatch message, which it
// formats as a plain error rather than a ParseError.
var badTypeRE = regexp.MustCompile(`incompatible types: TOML value has type|type mismatch for .*: expected table`)

// lastKeyRE is the location prefix of BurntSushi/toml's plain errors; the
// decoder knows the key path better (with array indexes).
var lastKeyRE = regexp.MustCompile(`^toml: (line \d+ )?\(last key "[^"]*"\): `)

func (d *decoder) typeError(p toml.Primitive, t reflect.Type, path string, err error) {
	if pe := (toml.ParseError{}); errors.As(err, &pe) {
		d.errAt(path, "%s", pe.Message) // e.g. UnmarshalText's own message
		return
	}
	if badTypeRE.MatchString(err.Error()) {
		raw := d.raw(p)
		if arr, ok := raw.([]any); ok && t.Kind() == reflect.Slice {
			// An element is wrong: name it rather than "an array".
			for _, e := range arr {
				if describeTOML(e) != describeGo(t.Elem()) {
					d.errAt(path, "must be %s, not an array holding %s", describeGo(t), describeTOML(e))
					return
				}
			}
		}
		d.errAt(path, "must be %s, not %s", describeGo(t), describeTOML(raw))
		return
	}
	d.errAt(path, "%s", lastKeyRE.ReplaceAllString(err.Error(), ""))
}

// unknown reports a key that no field takes, with a guess at the one meant.
func (d *decoder) unknown(p toml.Primitive, parent reflect.Type, key, path string) {
	what := "unknown key"
	if !strings.ContainsAny(path, ".[") {
		switch d.raw(p).(type) {
		case map[string]any, []map[string]any:
			what = "unknown section"
		}
	}
	if near := nearestKey(parent, key); near != "" {
		what += " (did you mean " + near + "?)"
	}
	d.errAt(path, "%s", what)
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	tomlUnmarshaler = reflect.TypeFor[toml.Unmarshaler]()
)

// isTable reports whether t is decoded key by key: a struct that does not
// decode itself.
func isTable(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	pt := reflect.PointerTo(t)
	return !pt.Implements(textUnmarshaler) && !pt.Implements(tomlUnmarshaler) && t != reflect.TypeFor[time.Time]()
}

// fieldIndex finds the field of struct t that key k sets: by toml tag (or
// field name), exactly, else ignoring case, as toml.Decode matches.
func fieldIndex(t reflect.Type, k string) ([]int, bool) {
	var fold []int
	for _, f := range reflect.VisibleFields(t) {
		name, ok := tomlName(f)
		if !ok {
			continue
		}
		if name == k {
			return f.Index, true
		}
		if fold == nil && strings.EqualFold(name, k) {
			fold = f.Index
		}
	}
	return fold, fold != nil
}

func tomlName(f reflect.StructField) (string, bool) {
	if !f.IsExported() || f.Anonymous {
		return "", false
	}
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	switch name {
	case "-":
		return "", false
	case "":
		return f.Name, true
	}
	return name, true
}

// nearestKey returns the key of t that an unknown key k was probably meant
// to be ("baudrate" for "baud", "smtpd" for "smtp"), or "".
func nearestKey(t reflect.Type, k string) string {
	best, bestDist := "", 3
	lk := strings.ToLower(k)
	for _, f := range reflect.VisibleFields(t) {
		name, ok := tomlName(f)
		if !ok {
			continue
		}
		dist := editDistance(lk, strings.ToLower(name))
		if len(lk) >= 3 && len(name) >= 3 && (strings.HasPrefix(lk, name) || strings.HasPrefix(name, lk)) {
			dist = min(dist, 1)
		}
		if dist < bestDist && (dist <= 1 || len(lk) > 4) {
			best, bestDist = name, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes; keys are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describeGo names what a field of type t takes, in TOML words.
func describeGo(t reflect.Type) string {
	if t == reflect.TypeFor[Duration]() {
		return `a duration in quotes (e.g. "30s")`
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		return "a string"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return describeGo(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		if isTable(t.Elem()) {
			return "an array of tables"
		}
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(describeGo(t.Elem()), "a "), "an ") + "s"
	case reflect.Struct, reflect.Map:
		return "a table"
	}
	return t.String()
}

func isMap(v any) bool {
	_, ok := v.(map[string]any)
	return ok
}

// describeTOML names the type of a decoded TOML value.
func describeTOML(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time: // local dates and times too, as time.Time in fixed zones
		return "a date or time"
	case nil:
		return "nothing"
	}
	return fmt.Sprintf("%T", v)
}

// utf8BOM is accepted at the start of a file: Windows editors write it.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// checkEncoding refuses what is not UTF-8 text. A UTF-16 file (Notepad's
// "Unicode") would otherwise be reported as a confusing TOML error, or worse,
// read as nothing at all.
func checkEncoding(path string, data []byte) *Error {
	if bytes.HasPrefix(data, []byte{0xFF, 0xFE}) || bytes.HasPrefix(data, []byte{0xFE, 0xFF}) ||
		len(data) >= 2 && (data[0] == 0 || data[1] == 0) {
		return &Error{File: path, Line: 1, Msg: "file is UTF-16; save it as UTF-8"}
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return &Error{File: path, Line: 1 + bytes.Count(data[:i], []byte("\n")), Msg: "file contains a NUL byte; save it as UTF-8 text"}
	}
	return nil
}
