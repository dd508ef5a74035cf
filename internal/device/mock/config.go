package mock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/bai-agent/bai-agent/internal/units"
)

// Config is mock-accelerator.toml. Unknown keys are allowed, as upstream.
type Config struct {
	SlotName         string            `toml:"slot_name"`
	DevicePluginName string            `toml:"device_plugin_name"`
	Devices          []DeviceConfig    `toml:"devices"`
	Attributes       map[string]any    `toml:"attributes"`
	Formats          map[string]Format `toml:"formats"`
	// Stats is a bai-agent extension: "random" (upstream's behaviour, the
	// default) or "fixed" (50 % memory and utilisation, 200 W, 60 °C).
	Stats string `toml:"stats"`

	// path is the file it was read from ("" when built in memory): what
	// Plugin.Rescan reads again.
	path string
}

// DeviceConfig is one [[devices]] entry.
type DeviceConfig struct {
	MotherUUID   string `toml:"mother_uuid"`
	ModelName    string `toml:"model_name"`
	NUMANode     *int   `toml:"numa_node"`
	SubprocCount int    `toml:"subproc_count"`
	MemorySize   any    `toml:"memory_size"`
	IsMIGDevice  bool   `toml:"is_mig_device"`

	memBytes int64
}

// Format is a [formats.<subtype>] table: how the UI shows the slot.
type Format struct {
	HumanReadableName string       `toml:"human_readable_name"`
	Description       string       `toml:"description"`
	DisplayUnit       string       `toml:"display_unit"`
	DisplayIcon       string       `toml:"display_icon"`
	NumberFormat      NumberFormat `toml:"number_format"`
}

// NumberFormat is {binary, round_length}.
type NumberFormat struct {
	Binary      bool `toml:"binary"`
	RoundLength int  `toml:"round_length"`
}

// ErrConfig marks a malformed mock configuration (the agent exits 2).
var ErrConfig = errors.New("invalid mock accelerator configuration")

func cfgErr(key, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, key, fmt.Sprintf(format, args...))
}

// FindConfig returns the file to load: explicit (the [agent]
// mock-accelerator-config setting or $BACKEND_MOCK_ACCELERATOR_CONFIG),
// else the first of ./mock-accelerator.toml,
// ~/.config/backend.ai/mock-accelerator.toml and
// /etc/backend.ai/mock-accelerator.toml. Upstream also reads
// $BACKEND_CONFIG_FILE, the variable agent.toml uses, which makes the mock
// parse agent.toml; we do not.
func FindConfig(explicit string, getenv func(string) string) (string, error) {
	if explicit == "" {
		explicit = getenv("BACKEND_MOCK_ACCELERATOR_CONFIG")
	}
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", cfgErr("mock-accelerator-config", "%v", err)
		}
		return explicit, nil
	}
	cands := []string{"mock-accelerator.toml"}
	if home := getenv("HOME"); home != "" {
		cands = append(cands, filepath.Join(home, ".config", "backend.ai", "mock-accelerator.toml"))
	}
	cands = append(cands, "/etc/backend.ai/mock-accelerator.toml")
	for _, c := range cands {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	return "", cfgErr("mock-accelerator-config", "no mock-accelerator.toml found (looked at %s)", strings.Join(cands, ", "))
}

// LoadConfig reads and checks a mock-accelerator.toml.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, cfgErr(path, "%v", err)
	}
	var c Config
	if err := toml.Unmarshal(b, &c); err != nil {
		return nil, cfgErr(path, "%v", err)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.path = path
	return &c, nil
}

func (c *Config) check() error {
	if c.SlotName == "" {
		return cfgErr("slot_name", "required")
	}
	if strings.ContainsAny(c.SlotName, ".: /") || c.SlotName == "cpu" || c.SlotName == "mem" {
		return cfgErr("slot_name", "%q is not a device name (letters, digits, '-', '_'; not cpu or mem)", c.SlotName)
	}
	switch c.Stats {
	case "":
		c.Stats = "random"
	case "random", "fixed":
	default:
		return cfgErr("stats", "%q: one of random, fixed", c.Stats)
	}
	seen := map[string]bool{}
	for i := range c.Devices {
		d := &c.Devices[i]
		key := fmt.Sprintf("devices[%d]", i)
		if d.MotherUUID == "" {
			return cfgErr(key+".mother_uuid", "required")
		}
		if strings.Contains(d.MotherUUID, ":") {
			// resource.txt splits "device:amount" on the first colon.
			return cfgErr(key+".mother_uuid", "%q must not contain ':'", d.MotherUUID)
		}
		if seen[d.MotherUUID] {
			return cfgErr(key+".mother_uuid", "%q is used twice", d.MotherUUID)
		}
		seen[d.MotherUUID] = true
		if d.ModelName == "" {
			return cfgErr(key+".model_name", "required")
		}
		if d.NUMANode == nil || *d.NUMANode < 0 {
			return cfgErr(key+".numa_node", "required, an integer >= 0")
		}
		if d.SubprocCount < 1 {
			return cfgErr(key+".subproc_count", "required, an integer >= 1")
		}
		switch v := d.MemorySize.(type) {
		case string:
			n, err := units.ParseBinarySize(v)
			if err != nil || n <= 0 {
				return cfgErr(key+".memory_size", "%q is not a positive binary size (e.g. \"40G\")", v)
			}
			d.memBytes = n
		case int64:
			if v <= 0 {
				return cfgErr(key+".memory_size", "%d is not positive", v)
			}
			d.memBytes = v
		default:
			return cfgErr(key+".memory_size", "required, a binary size such as \"40G\"")
		}
		if d.IsMIGDevice {
			if c.SlotName != "cuda" {
				return cfgErr(key+".is_mig_device", "MIG devices exist only with slot_name = \"cuda\"")
			}
			if _, prof, ok := strings.Cut(d.ModelName, "-"); !ok || prof == "" {
				return cfgErr(key+".model_name", "a MIG device's model_name must look like MIG-<profile>, got %q", d.ModelName)
			}
		}
	}
	return nil
}
