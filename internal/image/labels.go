package image

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/shopspring/decimal"
)

// Label names.
const (
	LabelKernelspec    = "ai.backend.kernelspec"
	LabelFeatures      = "ai.backend.features"
	LabelServicePorts  = "ai.backend.service-ports"
	LabelEndpointPorts = "ai.backend.endpoint-ports"
	LabelResourceMin   = "ai.backend.resource.min."
	LabelCorecount     = "ai.backend.envs.corecount"
	LabelRuntimeType   = "ai.backend.runtime-type"
	LabelRuntimePath   = "ai.backend.runtime-path"
	LabelBaseDistro    = "ai.backend.base-distro"
)

// ServicePort is one service a kernel exposes, in the manager's JSON shape.
type ServicePort struct {
	Name           string `json:"name"`
	Protocol       string `json:"protocol"`
	ContainerPorts []int  `json:"container_ports"`
	HostPorts      []int  `json:"host_ports"`
	IsInference    bool   `json:"is_inference"`
	// From the runner's get-apps (service definitions), for clients.
	URLTemplate      string   `json:"url_template,omitempty"`
	AllowedArguments []string `json:"allowed_arguments,omitempty"`
	AllowedEnvs      []string `json:"allowed_envs,omitempty"`
}

// Reserved container ports: the REPL (2000-2003) and the built-in sshd and
// ttyd services.
var reservedPorts = map[int]bool{2000: true, 2001: true, 2002: true, 2003: true, 2200: true, 7681: true}

var protocols = map[string]bool{"tcp": true, "http": true, "preopen": true, "vnc": true, "rdp": true, "pty": true, "internal": true}

// ParseServicePorts parses the ai.backend.service-ports grammar:
// comma-separated "name:proto:port" or "name:proto:[p1,p2]". Services with
// protocol pty are skipped, as the real agent does.
func ParseServicePorts(label string, endpointPorts string) ([]ServicePort, error) {
	label = strings.TrimSpace(label)
	if label == "" {
		return nil, nil
	}
	inference := map[string]bool{}
	for _, n := range strings.Split(endpointPorts, ",") {
		if n = strings.TrimSpace(n); n != "" {
			inference[n] = true
		}
	}
	var items []string
	depth, start := 0, 0
	for i, c := range label {
		switch c {
		case '[':
			depth++
		case ']':
			depth--
			if depth < 0 {
				return nil, fmt.Errorf("%s: unbalanced ']' at offset %d", LabelServicePorts, i)
			}
		case ',':
			if depth == 0 {
				items = append(items, label[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("%s: unbalanced '['", LabelServicePorts)
	}
	items = append(items, label[start:])
	var out []ServicePort
	seen := map[string]bool{}
	usedPorts := map[int]string{}
	for _, item := range items {
		item = strings.TrimSpace(item)
		parts := strings.SplitN(item, ":", 3)
		if len(parts) != 3 || parts[0] == "" {
			return nil, fmt.Errorf("%s: %q is not name:protocol:port", LabelServicePorts, item)
		}
		name, proto, rawPorts := parts[0], strings.ToLower(parts[1]), parts[2]
		if !protocols[proto] {
			return nil, fmt.Errorf("%s: %q has unknown protocol %q (tcp, http, preopen, vnc, rdp, pty)", LabelServicePorts, item, parts[1])
		}
		var ports []int
		if strings.HasPrefix(rawPorts, "[") {
			if !strings.HasSuffix(rawPorts, "]") {
				return nil, fmt.Errorf("%s: %q: port list must end with ']'", LabelServicePorts, item)
			}
			for _, p := range strings.Split(rawPorts[1:len(rawPorts)-1], ",") {
				n, err := parsePort(item, strings.TrimSpace(p))
				if err != nil {
					return nil, err
				}
				ports = append(ports, n)
			}
		} else {
			n, err := parsePort(item, rawPorts)
			if err != nil {
				return nil, err
			}
			ports = []int{n}
		}
		if len(ports) == 0 {
			return nil, fmt.Errorf("%s: %q has no port", LabelServicePorts, item)
		}
		if proto == "pty" {
			continue
		}
		if seen[name] {
			return nil, fmt.Errorf("%s: service %q is declared twice", LabelServicePorts, name)
		}
		seen[name] = true
		for _, p := range ports {
			if other, dup := usedPorts[p]; dup {
				return nil, fmt.Errorf("%s: port %d is used by both %q and %q", LabelServicePorts, p, other, name)
			}
			usedPorts[p] = name
		}
		out = append(out, ServicePort{Name: name, Protocol: proto, ContainerPorts: ports, HostPorts: nil, IsInference: inference[name]})
	}
	return out, nil
}

func parsePort(item, s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %q: %q is not a port number", LabelServicePorts, item, s)
	}
	if n <= 1024 || n >= 65535 {
		return 0, fmt.Errorf("%s: %q: port %d must be > 1024 and < 65535", LabelServicePorts, item, n)
	}
	if reservedPorts[n] {
		return 0, fmt.Errorf("%s: %q: port %d is reserved (2000-2003, 2200, 7681)", LabelServicePorts, item, n)
	}
	return n, nil
}

// Info is what the agent needs from an image's labels.
type Info struct {
	Kernelspec    int
	Features      map[string]bool
	ServicePorts  []ServicePort
	ResourceMin   map[resource.SlotName]decimal.Decimal
	CorecountEnvs []string
	RuntimeType   string
	RuntimePath   string
	BaseDistro    string
}

// HasFeature reports whether ai.backend.features lists f.
func (i *Info) HasFeature(f string) bool { return i.Features[f] }

// Parse reads the labels of a kernel image. types gives the slot types so
// resource.min values parse with the right unit.
func Parse(labels map[string]string, types map[resource.SlotName]resource.SlotType) (*Info, error) {
	info := &Info{Features: map[string]bool{}, ResourceMin: map[resource.SlotName]decimal.Decimal{}}
	ks, ok := labels[LabelKernelspec]
	if !ok {
		return nil, fmt.Errorf("image is not a Backend.AI kernel image: label %s is missing", LabelKernelspec)
	}
	n, err := strconv.Atoi(strings.TrimSpace(ks))
	if err != nil || n < 1 {
		return nil, fmt.Errorf("%s: %q is not a positive integer", LabelKernelspec, ks)
	}
	info.Kernelspec = n
	feat, ok := labels[LabelFeatures]
	if !ok {
		feat = "uid-match"
	}
	for _, f := range strings.Fields(feat) {
		info.Features[f] = true
	}
	sp, err := ParseServicePorts(labels[LabelServicePorts], labels[LabelEndpointPorts])
	if err != nil {
		return nil, err
	}
	info.ServicePorts = sp
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		slot, ok := strings.CutPrefix(k, LabelResourceMin)
		if !ok {
			continue
		}
		if slot == "" {
			return nil, fmt.Errorf("label %q names no slot", k)
		}
		typ := types[resource.SlotName(slot)]
		if typ == "" {
			typ = resource.SlotCount
			if strings.Contains(slot, "mem") {
				typ = resource.SlotBytes
			}
		}
		d, err := resource.ParseAmount(resource.SlotName(slot), typ, labels[k])
		if err != nil {
			return nil, fmt.Errorf("label %s: %w", k, err)
		}
		info.ResourceMin[resource.SlotName(slot)] = d
	}
	for _, e := range strings.Split(labels[LabelCorecount], ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if !validEnvName(e) {
			return nil, fmt.Errorf("%s: %q is not an environment variable name", LabelCorecount, e)
		}
		info.CorecountEnvs = append(info.CorecountEnvs, e)
	}
	info.RuntimeType = labels[LabelRuntimeType]
	if info.RuntimeType == "" {
		info.RuntimeType = "app"
	}
	info.RuntimePath = labels[LabelRuntimePath]
	info.BaseDistro = labels[LabelBaseDistro]
	return info, nil
}

func validEnvName(s string) bool {
	for i, c := range s {
		if c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return s != ""
}
