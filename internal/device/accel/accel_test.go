package accel

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/device/mock"
)

func mockConfigPath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "../../../configs/accelerator/mock-accelerator.toml")
}

func names(ps []device.Accelerator) string {
	var out []string
	for _, p := range ps {
		out = append(out, string(p.Key()))
	}
	return strings.Join(out, ",")
}

func TestSelection(t *testing.T) {
	for _, tc := range []struct {
		name         string
		allow, block []string
		want         string
	}{
		{"no lists: the mock needs naming", nil, nil, ""},
		{"python module path", []string{"ai.backend.accelerator.mock"}, nil, "cuda"},
		{"package prefix", []string{"ai.backend.accelerator"}, nil, "cuda"},
		{"short name", []string{"mock"}, nil, "cuda"},
		{"a prefix is not a word prefix", []string{"ai.backend.accel"}, nil, ""},
		{"blocked wins", []string{"ai.backend.accelerator.mock"}, []string{"ai.backend.accelerator.mock"}, ""},
		{"empty allowlist loads nothing", []string{}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := Load(context.Background(), Options{Allow: tc.allow, Block: tc.block, MockConfig: mockConfigPath(), Factories: []Factory{{Name: "mock", ExplicitOnly: true, New: newMock}}})
			if err != nil {
				t.Fatal(err)
			}
			if got := names(ps); got != tc.want {
				t.Fatalf("loaded %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	allow := []string{"mock"}
	_, err := Load(context.Background(), Options{Allow: allow, MockConfig: "/nonexistent.toml", Factories: []Factory{{Name: "mock", ExplicitOnly: true, New: newMock}}})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "mock-accelerator-config") {
		t.Errorf("missing mock config: %v", err)
	}
	_, err = Load(context.Background(), Options{Allow: allow, MockConfig: mockConfigPath(), Etcd: map[string]any{"mock": map[string]any{"allocation_mode": "both"}},
		Factories: []Factory{{Name: "mock", ExplicitOnly: true, New: newMock}}})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "config/plugins/accelerator/mock/allocation_mode") {
		t.Errorf("bad etcd key: %v", err)
	}
	// Two plugins with the same device name (a real cuda and a cuda mock).
	twin := Factory{Name: "mock2", New: func(ctx context.Context, o Options, pc map[string]any, explicit bool) (device.Accelerator, bool, error) {
		cfg, err := mock.LoadConfig(mockConfigPath())
		if err != nil {
			return nil, false, err
		}
		p, err := mock.New(cfg, device.ShareConfig{UnitMem: 2 << 30, UnitProc: 8})
		return p, err == nil, err
	}}
	_, err = Load(context.Background(), Options{Allow: []string{"mock", "mock2"}, MockConfig: mockConfigPath(), Factories: []Factory{{Name: "mock", New: newMock}, twin}})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), `device name "cuda"`) {
		t.Errorf("duplicate key: %v", err)
	}
}

// On a machine without an NVIDIA driver the cuda plugin is skipped
// unless asked for, and then loaded unavailable: nothing fails.
func TestCUDAWithoutDriver(t *testing.T) {
	for _, tc := range []struct {
		allow []string
		want  string
	}{{nil, ""}, {[]string{"ai.backend.accelerator.cuda_open"}, "cuda"}} {
		ps, err := Load(context.Background(), Options{Allow: tc.allow, Etcd: map[string]any{"cuda": map[string]any{"library_path": "/nonexistent/libnvidia-ml.so.1"}}, Factories: hardwareFactories()})
		if err != nil {
			t.Fatal(err)
		}
		if got := names(ps); got != tc.want {
			t.Fatalf("allow %v: loaded %q, want %q", tc.allow, got, tc.want)
		}
		for _, p := range ps {
			h, _ := p.NodeHWInfo()
			if h.Status != "unavailable" || !p.Available()["cuda.device"].IsZero() {
				t.Errorf("unavailable cuda plugin: %+v %v", h, p.Available())
			}
		}
	}
}
