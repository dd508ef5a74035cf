package krunner

import (
	"fmt"
	"strconv"
	"strings"
)

// interpolate expands a service definition's ${{ expr }} and {expr}
// tokens (the latter not after '$' or '{', so ${HOME} stays for the
// shell). An unknown variable or a stray brace is an invalid definition.
func interpolate(s string, vars map[string]any) (string, error) { return expand(s, vars, true) }

// formatMap is str.format_map for prestart arguments: every {expr}, with
// {{ and }} for literal braces.
func formatMap(s string, vars map[string]any) (string, error) { return expand(s, vars, false) }

func expand(s string, vars map[string]any, service bool) (string, error) {
	var b strings.Builder
	emit := func(expr string) error {
		v, err := evalExpr(expr, vars)
		if err == nil {
			b.WriteString(v)
		}
		return err
	}
	for i := 0; i < len(s); {
		switch {
		case service && strings.HasPrefix(s[i:], "${{"):
			end := strings.Index(s[i+3:], "}}")
			if end < 0 {
				return "", fmt.Errorf("InvalidServiceDefinition('unterminated ${{ in %q')", s)
			}
			if err := emit(strings.TrimSpace(s[i+3 : i+3+end])); err != nil {
				return "", err
			}
			i += 3 + end + 2
		case !service && (strings.HasPrefix(s[i:], "{{") || strings.HasPrefix(s[i:], "}}")):
			b.WriteByte(s[i])
			i += 2
		case s[i] == '{' && !(service && (strings.HasPrefix(s[i:], "{{") || i > 0 && (s[i-1] == '$' || s[i-1] == '{'))):
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("InvalidServiceDefinition('unterminated { in %q')", s)
			}
			if err := emit(s[i+1 : i+end]); err != nil {
				return "", err
			}
			i += end + 1
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), nil
}

// evalExpr supports what services use: name, name[0], name["key"],
// name.attr (on maps), and a trailing :format spec (ignored but for
// plain values).
func evalExpr(expr string, vars map[string]any) (string, error) {
	if i := strings.IndexByte(expr, ':'); i >= 0 && !strings.Contains(expr[:i], "[") {
		expr = expr[:i]
	}
	expr = strings.TrimSpace(expr)
	n := 0
	for n < len(expr) && (expr[n] == '_' || expr[n] >= 'a' && expr[n] <= 'z' || expr[n] >= 'A' && expr[n] <= 'Z' || n > 0 && expr[n] >= '0' && expr[n] <= '9') {
		n++
	}
	if n == 0 {
		return "", fmt.Errorf("InvalidServiceDefinition('bad expression {%s}')", expr)
	}
	v, ok := vars[expr[:n]]
	if !ok {
		return "", fmt.Errorf("InvalidServiceDefinition('unknown variable %s')", expr[:n])
	}
	rest := expr[n:]
	for rest != "" {
		switch rest[0] {
		case '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return "", fmt.Errorf("InvalidServiceDefinition('bad index in {%s}')", expr)
			}
			key := strings.Trim(rest[1:end], `"'`)
			switch c := v.(type) {
			case []any:
				i, err := strconv.Atoi(key)
				if err != nil || i < 0 || i >= len(c) {
					return "", fmt.Errorf("InvalidServiceDefinition('index %s out of range in {%s}')", key, expr)
				}
				v = c[i]
			case map[string]any:
				if v, ok = c[key]; !ok {
					return "", fmt.Errorf("InvalidServiceDefinition('no key %s in {%s}')", key, expr)
				}
			default:
				return "", fmt.Errorf("InvalidServiceDefinition('cannot index {%s}')", expr)
			}
			rest = rest[end+1:]
		case '.':
			m := 1
			for m < len(rest) && rest[m] != '.' && rest[m] != '[' {
				m++
			}
			c, ok := v.(map[string]any)
			if !ok {
				return "", fmt.Errorf("InvalidServiceDefinition('no attribute in {%s}')", expr)
			}
			if v, ok = c[rest[1:m]]; !ok {
				return "", fmt.Errorf("InvalidServiceDefinition('no attribute %s in {%s}')", rest[1:m], expr)
			}
			rest = rest[m:]
		default:
			return "", fmt.Errorf("InvalidServiceDefinition('bad expression {%s}')", expr)
		}
	}
	return fmt.Sprint(v), nil
}
