package nvidia

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/bai-agent/bai-agent/internal/backend"
)

// Injector is how GPUs reach a container.
type Injector string

// Injectors, as cuda_open's _detect_device_injector chooses them.
const (
	// InjectDriver: HostConfig.DeviceRequests with Driver "nvidia" (the
	// nvidia-container-toolkit hook on dockerd's PATH, Docker >= 19.03).
	InjectDriver Injector = "nvidia"
	// InjectLegacy: HostConfig.Runtime "nvidia" and NVIDIA_VISIBLE_DEVICES.
	InjectLegacy Injector = "legacy"
	// InjectCDI: DeviceRequests with Driver "cdi" and nvidia.com/gpu=<name>.
	InjectCDI Injector = "cdi"
	// InjectNone: the host cannot give GPUs to containers; cuda.device
	// is advertised as 0 (metrics still work).
	InjectNone Injector = "none"
)

// DefaultCDIDirs are where CDI specs live when the engine does not say.
var DefaultCDIDirs = []string{"/etc/cdi", "/var/run/cdi"}

// CDISpec is what we need of a CDI spec: its kind and device names.
type CDISpec struct {
	Kind    string `json:"kind" yaml:"kind"`
	Devices []struct {
		Name string `json:"name" yaml:"name"`
	} `json:"devices" yaml:"devices"`
}

// CDIDeviceNames returns the device names of every nvidia.com/gpu spec in
// dirs (unreadable or foreign files are skipped).
func CDIDeviceNames(dirs []string) map[string]bool {
	out := map[string]bool{}
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			ext := filepath.Ext(e.Name())
			if ext != ".json" && ext != ".yaml" && ext != ".yml" {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			var spec CDISpec
			if ext == ".json" {
				err = json.Unmarshal(b, &spec)
			} else {
				err = yaml.Unmarshal(b, &spec)
			}
			if err != nil || spec.Kind != "nvidia.com/gpu" {
				continue
			}
			for _, d := range spec.Devices {
				out[d.Name] = true
			}
		}
	}
	return out
}

// versionAtLeast compares dotted versions ("20.10.24+dfsg1" >= "19.3.0").
func versionAtLeast(v, min string) bool {
	parse := func(s string) []int {
		s, _, _ = strings.Cut(s, "+")
		s, _, _ = strings.Cut(s, "-")
		var out []int
		for _, p := range strings.Split(s, ".") {
			n, _ := strconv.Atoi(p)
			out = append(out, n)
		}
		return out
	}
	a, b := parse(v), parse(min)
	for i := 0; i < len(b); i++ {
		x := 0
		if i < len(a) {
			x = a[i]
		}
		if x != b[i] {
			return x > b[i]
		}
	}
	return true
}

// DetectInjector picks how GPUs reach containers from what the engine
// reports (cuda_open's rules, plus CDI on Docker when dockerd has CDI spec
// directories with an NVIDIA spec). It returns the reason with the choice.
func DetectInjector(info *backend.EngineInfo, cdiNames map[string]bool) (Injector, string) {
	if info == nil {
		return InjectNone, "the container engine did not answer"
	}
	if info.Name == "Podman Engine" {
		if versionAtLeast(info.ServerVersion, "5.4.0") && len(cdiNames) > 0 {
			return InjectCDI, "Podman " + info.ServerVersion + " with an nvidia.com/gpu CDI spec"
		}
		return InjectNone, "Podman " + info.ServerVersion + " without an nvidia.com/gpu CDI spec (needs >= 5.4.0 and nvidia-ctk cdi generate)"
	}
	for _, r := range info.Runtimes {
		if r == "nvidia" {
			if versionAtLeast(info.ServerVersion, "19.3.0") {
				return InjectDriver, "dockerd " + info.ServerVersion + " has the nvidia runtime: device requests with the nvidia driver"
			}
			return InjectLegacy, "dockerd " + info.ServerVersion + " predates device requests: the legacy nvidia runtime"
		}
	}
	if len(info.CDISpecDirs) > 0 && len(cdiNames) > 0 {
		return InjectCDI, "dockerd " + info.ServerVersion + " has CDI enabled and an nvidia.com/gpu spec"
	}
	return InjectNone, fmt.Sprintf("dockerd %s has no nvidia runtime (runtimes: %s) and no nvidia.com/gpu CDI spec: install nvidia-container-toolkit", info.ServerVersion, strings.Join(info.Runtimes, ", "))
}
