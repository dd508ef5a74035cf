package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/bai-agent/bai-agent/internal/units"
)

// HostPort is "host:port" or a {host, port} table, as Backend.AI accepts.
type HostPort struct {
	Host string
	Port int
}

func (h HostPort) String() string { return net.JoinHostPort(h.Host, strconv.Itoa(h.Port)) }

// IsZero reports whether h is unset.
func (h HostPort) IsZero() bool { return h.Host == "" && h.Port == 0 }

// ParseHostPort parses "host:port".
func ParseHostPort(s string) (HostPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return HostPort{}, fmt.Errorf("%q is not host:port", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return HostPort{}, fmt.Errorf("%q has an invalid port", s)
	}
	return HostPort{Host: host, Port: p}, nil
}

// SetConfigValue implements Value.
func (h *HostPort) SetConfigValue(v any) error {
	switch x := v.(type) {
	case string:
		hp, err := ParseHostPort(x)
		if err != nil {
			return err
		}
		*h = hp
		return nil
	case map[string]any:
		host, _ := x["host"].(string)
		port, ok := x["port"].(int64)
		if !ok || port < 0 || port > 65535 {
			return fmt.Errorf("expected {host = \"...\", port = N} with 0 <= N <= 65535")
		}
		*h = HostPort{Host: host, Port: int(port)}
		return nil
	}
	return fmt.Errorf("expected \"host:port\" or {host, port}, got %s", tomlType(v))
}

// HostPortList is one address or a list of them ([etcd] addr).
type HostPortList []HostPort

// SetConfigValue implements Value.
func (l *HostPortList) SetConfigValue(v any) error {
	if arr, ok := v.([]any); ok {
		out := make(HostPortList, 0, len(arr))
		for i, it := range arr {
			var hp HostPort
			if err := hp.SetConfigValue(it); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
			out = append(out, hp)
		}
		*l = out
		return nil
	}
	var hp HostPort
	if err := hp.SetConfigValue(v); err != nil {
		return err
	}
	*l = HostPortList{hp}
	return nil
}

// Size is a byte size written as an integer or BinarySize text ("1G").
type Size int64

// SetConfigValue implements Value.
func (s *Size) SetConfigValue(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("size must not be negative")
		}
		*s = Size(x)
		return nil
	case string:
		n, err := units.ParseBinarySize(x)
		if err != nil {
			return err
		}
		*s = Size(n)
		return nil
	}
	return fmt.Errorf("expected a size such as \"1G\" or an integer, got %s", tomlType(v))
}

// PortRange is [first, last], both inclusive.
type PortRange [2]int

// SetConfigValue implements Value.
func (r *PortRange) SetConfigValue(v any) error {
	arr, ok := v.([]any)
	if !ok || len(arr) != 2 {
		return fmt.Errorf("expected [first, last]")
	}
	a, ok1 := arr[0].(int64)
	b, ok2 := arr[1].(int64)
	if !ok1 || !ok2 {
		return fmt.Errorf("expected two integers")
	}
	pr := PortRange{int(a), int(b)}
	if err := pr.validate(); err != nil {
		return err
	}
	*r = pr
	return nil
}

func (r PortRange) validate() error {
	if r[0] < 1024 || r[1] > 65535 || r[0] > r[1] {
		return fmt.Errorf("port range [%d, %d] must satisfy 1024 <= first <= last <= 65535", r[0], r[1])
	}
	return nil
}

// ParsePortRange parses "30000-31000" (BACKEND_CONTAINER_PORT_RANGE).
func ParsePortRange(s string) (PortRange, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return PortRange{}, fmt.Errorf("%q is not first-last", s)
	}
	x, err1 := strconv.Atoi(strings.TrimSpace(a))
	y, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil {
		return PortRange{}, fmt.Errorf("%q is not first-last", s)
	}
	pr := PortRange{x, y}
	return pr, pr.validate()
}

// Duration is seconds as an integer or float (Backend.AI writes intervals
// as plain numbers).
type Duration float64

// SetConfigValue implements Value.
func (d *Duration) SetConfigValue(v any) error {
	switch x := v.(type) {
	case int64:
		*d = Duration(x)
	case float64:
		*d = Duration(x)
	default:
		return fmt.Errorf("expected seconds as a number, got %s", tomlType(v))
	}
	if *d < 0 {
		return fmt.Errorf("must not be negative")
	}
	return nil
}
