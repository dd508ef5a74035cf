package config

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// Position locates a key in a config file.
type Position struct {
	File   string
	Line   int
	Column int
}

func (p Position) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// Warning is a problem that does not stop start-up (an unknown key).
type Warning struct {
	Pos Position
	Key string
	Msg string
}

func (w Warning) String() string { return fmt.Sprintf("%s: %s: %s", w.Pos, w.Key, w.Msg) }

// ValueError is an invalid value for a known key.
type ValueError struct {
	Pos Position
	Key string
	Msg string
}

func (e *ValueError) Error() string {
	return fmt.Sprintf("%s: invalid value for %s: %s", e.Pos, e.Key, e.Msg)
}

// Value is implemented by config field types that parse themselves from a
// decoded TOML value (string, int64, float64, bool, []any, map[string]any).
type Value interface {
	SetConfigValue(v any) error
}

// normalizeKey maps snake_case to the canonical kebab-case.
func normalizeKey(k string) string { return strings.ReplaceAll(k, "_", "-") }

// keyPositions walks the document once and records where each key (by its
// normalized dotted path) is written.
func keyPositions(file string, data []byte) map[string]Position {
	out := map[string]Position{}
	p := &unstable.Parser{}
	p.Reset(data)
	var prefix []string
	record := func(path []string, n *unstable.Node) {
		sh := p.Shape(n.Raw)
		key := strings.Join(path, ".")
		if _, ok := out[key]; !ok {
			out[key] = Position{File: file, Line: sh.Start.Line, Column: sh.Start.Column}
		}
	}
	var walkKV func(base []string, kv *unstable.Node)
	keyParts := func(n *unstable.Node) ([]string, *unstable.Node) {
		var parts []string
		var first *unstable.Node
		it := n.Key()
		for it.Next() {
			if first == nil {
				first = it.Node()
			}
			parts = append(parts, normalizeKey(string(it.Node().Data)))
		}
		return parts, first
	}
	walkKV = func(base []string, kv *unstable.Node) {
		parts, first := keyParts(kv)
		if first == nil {
			return
		}
		path := append(append([]string{}, base...), parts...)
		record(path, first)
		v := kv.Value()
		if v != nil && v.Kind == unstable.InlineTable {
			it := v.Children()
			for it.Next() {
				walkKV(path, it.Node())
			}
		}
	}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			parts, first := keyParts(e)
			prefix = parts
			if first != nil {
				// The tables a header opens implicitly ([a.b.c] opens
				// a.b) are placed at the header too.
				for i := 1; i <= len(parts); i++ {
					record(parts[:i], first)
				}
			}
		case unstable.KeyValue:
			walkKV(prefix, e)
		}
	}
	return out
}

// binder assigns a decoded TOML tree onto a tagged struct.
type binder struct {
	file     string
	pos      map[string]Position
	warnings []Warning
	set      map[string]Position // canonical key -> where the file set it
}

func (b *binder) posOf(path string) Position {
	for p := path; p != ""; {
		if pos, ok := b.pos[p]; ok {
			return pos
		}
		i := strings.LastIndex(p, ".")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return Position{File: b.file}
}

func (b *binder) errorf(path string, format string, args ...any) error {
	return &ValueError{Pos: b.posOf(path), Key: path, Msg: fmt.Sprintf(format, args...)}
}

// tagInfo reads `toml:"name"` and `alias:"other"` tags.
func tagInfo(f reflect.StructField) (name string, aliases []string, raw bool) {
	tag := f.Tag.Get("toml")
	if tag == "" || tag == "-" {
		return "", nil, false
	}
	parts := strings.Split(tag, ",")
	name = parts[0]
	for _, p := range parts[1:] {
		if p == "raw" {
			raw = true
		}
	}
	if a := f.Tag.Get("alias"); a != "" {
		aliases = strings.Split(a, ",")
	}
	return name, aliases, raw
}

func (b *binder) bindStruct(path string, tree map[string]any, rv reflect.Value) error {
	rt := rv.Type()
	seen := map[string]bool{}
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		name, aliases, raw := tagInfo(f)
		if name == "" {
			continue
		}
		keys := append([]string{name}, aliases...)
		for _, k := range keys {
			v, ok := tree[k]
			if !ok {
				continue
			}
			seen[k] = true
			child := joinPath(path, k)
			// Aliases exist only on leaves, so the canonical key is the
			// parent's path plus the field's own name.
			// Tables are not recorded: a key under [agent] that the file
			// leaves out keeps its default.
			if b.set != nil && (raw || rv.Field(i).Kind() != reflect.Struct || isLeafType(rv.Field(i))) {
				b.set[joinPath(path, name)] = b.posOf(child)
			}
			if raw {
				rv.Field(i).Set(reflect.ValueOf(v))
				continue
			}
			if err := b.assign(child, v, rv.Field(i)); err != nil {
				return err
			}
		}
	}
	var unknown []string
	for k := range tree {
		if !seen[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		child := joinPath(path, k)
		b.warnings = append(b.warnings, Warning{Pos: b.posOf(child), Key: child, Msg: "unknown key (ignored)"})
	}
	return nil
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

var valueType = reflect.TypeFor[Value]()
var textType = reflect.TypeFor[encoding.TextUnmarshaler]()

func (b *binder) assign(path string, v any, fv reflect.Value) error {
	if fv.CanAddr() {
		pv := fv.Addr()
		if pv.Type().Implements(valueType) {
			if err := pv.Interface().(Value).SetConfigValue(v); err != nil {
				return b.errorf(path, "%v", err)
			}
			return nil
		}
		if pv.Type().Implements(textType) {
			s, ok := v.(string)
			if !ok {
				return b.errorf(path, "expected a string, got %s", tomlType(v))
			}
			if err := pv.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
				return b.errorf(path, "%v", err)
			}
			return nil
		}
	}
	switch fv.Kind() {
	case reflect.Pointer:
		nv := reflect.New(fv.Type().Elem())
		if err := b.assign(path, v, nv.Elem()); err != nil {
			return err
		}
		fv.Set(nv)
		return nil
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return b.errorf(path, "expected a table, got %s", tomlType(v))
		}
		return b.bindStruct(path, m, fv)
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			return b.errorf(path, "expected a string, got %s", tomlType(v))
		}
		fv.SetString(s)
	case reflect.Bool:
		x, ok := v.(bool)
		if !ok {
			return b.errorf(path, "expected true or false, got %s", tomlType(v))
		}
		fv.SetBool(x)
	case reflect.Int, reflect.Int64, reflect.Int32:
		x, ok := v.(int64)
		if !ok {
			return b.errorf(path, "expected an integer, got %s", tomlType(v))
		}
		if fv.OverflowInt(x) {
			return b.errorf(path, "%d is out of range", x)
		}
		fv.SetInt(x)
	case reflect.Float64:
		switch x := v.(type) {
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return b.errorf(path, "must be a finite number")
			}
			fv.SetFloat(x)
		case int64:
			fv.SetFloat(float64(x))
		default:
			return b.errorf(path, "expected a number, got %s", tomlType(v))
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			return b.errorf(path, "expected an array, got %s", tomlType(v))
		}
		out := reflect.MakeSlice(fv.Type(), len(arr), len(arr))
		for i, it := range arr {
			if err := b.assign(fmt.Sprintf("%s[%d]", path, i), it, out.Index(i)); err != nil {
				return err
			}
		}
		fv.Set(out)
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return b.errorf(path, "expected a table, got %s", tomlType(v))
		}
		out := reflect.MakeMap(fv.Type())
		for k, it := range m {
			ev := reflect.New(fv.Type().Elem()).Elem()
			if err := b.assign(joinPath(path, k), it, ev); err != nil {
				return err
			}
			out.SetMapIndex(reflect.ValueOf(k), ev)
		}
		fv.Set(out)
	case reflect.Interface:
		fv.Set(reflect.ValueOf(v))
	default:
		return b.errorf(path, "unsupported field kind %s", fv.Kind())
	}
	return nil
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case nil:
		return "nothing"
	}
	return fmt.Sprintf("%T", v)
}

// normalizeTree rewrites snake_case keys to kebab-case, recursively. Tables
// under raw sections are normalized too; that is harmless.
func normalizeTree(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, it := range x {
			out[normalizeKey(k)] = normalizeTree(it)
		}
		return out
	case []any:
		for i := range x {
			x[i] = normalizeTree(x[i])
		}
		return x
	}
	return v
}
