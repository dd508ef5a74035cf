package config

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// SourceKind says where an effective value came from.
type SourceKind string

// The layers, lowest first; a later layer wins.
const (
	FromDefault SourceKind = "default"
	FromFile    SourceKind = "file"
	FromEnv     SourceKind = "environment"
	FromEtcd    SourceKind = "etcd"
)

// Source is where one key's value came from: the file position, the
// environment variable or the etcd key.
type Source struct {
	Kind   SourceKind
	Detail string
}

func (s Source) String() string {
	if s.Detail == "" {
		return string(s.Kind)
	}
	return string(s.Kind) + " " + s.Detail
}

// MarkSource records that key (canonical dotted kebab-case, e.g.
// "container.kernel-uid") was set by s. Load marks file and environment
// values; whoever overlays etcd values marks those.
func (c *Config) MarkSource(key string, s Source) {
	if c.sources == nil {
		c.sources = map[string]Source{}
	}
	c.sources[key] = s
}

// SourceOf is where key's value came from: the most specific mark on the
// key or on a table above it, else the default.
func (c *Config) SourceOf(key string) Source {
	for k := key; k != ""; {
		if s, ok := c.sources[k]; ok {
			return s
		}
		i := strings.LastIndex(k, ".")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return Source{Kind: FromDefault}
}

// Entry is one effective key with its printed value and source.
type Entry struct {
	Key    string
	Value  string
	Source Source
}

// secretWords mark keys whose values are never printed.
var secretWords = []string{"password", "secret", "token"}

func isSecret(key string) bool {
	last := key[strings.LastIndex(key, ".")+1:]
	for _, w := range secretWords {
		if strings.Contains(last, w) {
			return true
		}
	}
	return false
}

// Effective lists every key of the configuration, in the order of the
// sections and fields, with its value (secrets shown as "<redacted>" when
// set) and where it came from.
func (c *Config) Effective() []Entry {
	var out []Entry
	var walk func(path string, v reflect.Value)
	walk = func(path string, v reflect.Value) {
		if v.Kind() == reflect.Struct && !isLeafType(v) {
			t := v.Type()
			for i := 0; i < t.NumField(); i++ {
				name, _, _ := tagInfo(t.Field(i))
				if name == "" {
					continue
				}
				walk(joinPath(path, name), v.Field(i))
			}
			return
		}
		val := formatValue(v)
		if isSecret(path) && val != `""` {
			val = `"<redacted>"`
		}
		out = append(out, Entry{Key: path, Value: val, Source: c.SourceOf(path)})
	}
	walk("", rootValue(c))
	return out
}

// isLeafType: types that parse themselves print as one value.
func isLeafType(v reflect.Value) bool {
	if v.CanAddr() {
		pv := v.Addr().Type()
		if pv.Implements(valueType) || pv.Implements(textType) {
			return true
		}
	}
	_, ok := v.Interface().(fmt.Stringer)
	return ok
}

// formatValue prints a value the way it would be written in agent.toml
// where that is simple (strings quoted, arrays and tables as JSON).
func formatValue(v reflect.Value) string {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return "(unset)"
		}
		v = v.Elem()
	}
	if v.Kind() == reflect.Interface && v.IsNil() {
		return "(unset)"
	}
	if s, ok := v.Interface().(fmt.Stringer); ok {
		return fmt.Sprintf("%q", s.String())
	}
	if v.CanAddr() {
		if s, ok := v.Addr().Interface().(fmt.Stringer); ok {
			return fmt.Sprintf("%q", s.String())
		}
	}
	switch v.Kind() {
	case reflect.String:
		return fmt.Sprintf("%q", v.String())
	case reflect.Bool, reflect.Int, reflect.Int32, reflect.Int64, reflect.Float64:
		return fmt.Sprint(v.Interface())
	}
	if v.Kind() == reflect.Slice || v.Kind() == reflect.Array {
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = formatValue(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	if v.Kind() == reflect.Map && v.IsNil() {
		return "{}"
	}
	b, err := json.Marshal(v.Interface())
	if err != nil {
		return fmt.Sprintf("%v", v.Interface())
	}
	return string(b)
}

// PrintEffective writes the entries as TOML-like "key = value  # source"
// lines under their [section]; with onlySet, defaults are left out, and
// sections the agent accepts without interpreting are shown only when set.
func PrintEffective(w io.Writer, entries []Entry, onlySet bool) {
	type line struct{ section, kv, src string }
	var lines []line
	width := 0
	for _, e := range entries {
		if onlySet && e.Source.Kind == FromDefault {
			continue
		}
		sec, key, ok := strings.Cut(e.Key, ".")
		if !ok { // a raw top-level section: its whole table on one line
			if e.Value == "(unset)" {
				continue
			}
			sec, key = e.Key, "# (accepted, not interpreted)"
		}
		l := line{sec, key + " = " + e.Value, e.Source.String()}
		if n := len(l.kv); n > width && n <= 60 {
			width = n
		}
		lines = append(lines, l)
	}
	section := ""
	for i, l := range lines {
		if l.section != section {
			if i > 0 {
				fmt.Fprintln(w)
			}
			section = l.section
			fmt.Fprintf(w, "[%s]\n", section)
		}
		fmt.Fprintf(w, "%-*s  # %s\n", width, l.kv, l.src)
	}
}
