package accel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/device/mock"
)

// ErrConfig marks a plugin configuration the agent must refuse to start
// with (exit 2).
var ErrConfig = errors.New("invalid compute plugin configuration")

// Options are what Load needs.
type Options struct {
	Allow, Block []string
	// Etcd is config/plugins/accelerator as read from etcd (plugin name ->
	// key -> value); nil without etcd.
	Etcd       map[string]any
	MockConfig string // [agent] mock-accelerator-config
	Engine     backend.EngineInspector
	Getenv     func(string) string
	Log        *slog.Logger
	// Factories replaces the built-in plugin constructors (tests).
	Factories []Factory
}

// Factory builds one plugin. ok=false with a nil error means "not on this
// host" (skipped unless explicitly allowed); a non-nil error is fatal.
type Factory struct {
	Name string
	// ExplicitOnly plugins load only when the allowlist names them (the
	// mock).
	ExplicitOnly bool
	New          func(ctx context.Context, o Options, pluginCfg map[string]any, explicit bool) (device.Accelerator, bool, error)
}

// Load builds the accelerator plugins in the order of the factories.
func Load(ctx context.Context, o Options) ([]device.Accelerator, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	fs := o.Factories
	if fs == nil {
		fs = Builtin()
	}
	var out []device.Accelerator
	for _, f := range fs {
		load, explicit := device.Selection(f.Name, o.Allow, o.Block)
		if !load || (f.ExplicitOnly && !explicit) {
			continue
		}
		pc, _ := o.Etcd[f.Name].(map[string]any)
		p, ok, err := f.New(ctx, o, pc, explicit)
		if err != nil {
			for _, q := range out {
				_ = q.Close()
			}
			return nil, fmt.Errorf("%w: compute plugin %s: %v", ErrConfig, f.Name, err)
		}
		if !ok {
			continue
		}
		for _, q := range out {
			if q.Key() == p.Key() {
				_ = p.Close()
				for _, q := range out {
					_ = q.Close()
				}
				return nil, fmt.Errorf("%w: compute plugins %s and %s both use the device name %q; allow only one of them", ErrConfig, f.Name, q.Key(), p.Key())
			}
		}
		o.Log.Info("compute plugin loaded", "plugin", f.Name, "key", p.Key(), "devices", len(p.Devices()), "available", p.Available())
		out = append(out, p)
	}
	return out, nil
}

// Builtin lists the compiled-in plugins.
func Builtin() []Factory {
	return append(hardwareFactories(), Factory{Name: "mock", ExplicitOnly: true, New: newMock})
}

func newMock(_ context.Context, o Options, pc map[string]any, _ bool) (device.Accelerator, bool, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	path, err := mock.FindConfig(o.MockConfig, getenv)
	if err != nil {
		return nil, false, err
	}
	cfg, err := mock.LoadConfig(path)
	if err != nil {
		return nil, false, err
	}
	pcfg, err := device.ParseShareConfig("mock", pc)
	if err != nil {
		return nil, false, err
	}
	p, err := mock.New(cfg, pcfg)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	return p, true, nil
}
