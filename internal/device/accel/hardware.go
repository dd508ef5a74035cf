package accel

import (
	"context"
	"errors"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/device/nvidia"
	"github.com/bai-agent/bai-agent/internal/device/rocm"
	"github.com/bai-agent/bai-agent/internal/device/tpu"
)

// hardwareFactories lists the plugins for real devices.
func hardwareFactories() []Factory {
	return []Factory{{Name: "cuda", New: newCUDA}, {Name: "rocm", New: newROCm}, {Name: "tpu", New: newTPU}}
}

// newROCm finds AMD GPUs in sysfs; none: skipped.
func newROCm(_ context.Context, o Options, pc map[string]any, explicit bool) (device.Accelerator, bool, error) {
	p, ok, err := rocm.Discover(rocm.Options{Config: pc, Log: o.Log.With("plugin", "rocm")})
	if err != nil || !ok {
		if explicit {
			o.Log.Warn("rocm plugin asked for, but no AMD GPU is listed in /sys/class/kfd")
		}
		return nil, false, err
	}
	return p, true, nil
}

// newTPU finds TPU chips (/dev/accel*, /dev/vfio/<n>); none: skipped.
func newTPU(_ context.Context, o Options, _ map[string]any, explicit bool) (device.Accelerator, bool, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	p, ok, err := tpu.Discover(tpu.Options{Getenv: getenv, VFIO: explicit})
	if err != nil || !ok {
		if explicit {
			o.Log.Warn("tpu plugin asked for, but no TPU chip is in /dev/accel* or /dev/vfio")
		}
		return nil, false, err
	}
	return p, true, nil
}

func engineInfo(ctx context.Context, o Options) *backend.EngineInfo {
	if o.Engine == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := o.Engine.EngineInfo(ctx)
	if err != nil {
		o.Log.Warn("container engine info unavailable; GPUs cannot be given to containers", "error", err)
		return nil
	}
	return info
}

// newCUDA loads NVML. No driver: skipped (or, when cuda was asked for by
// name, loaded as unavailable with the reason in hwinfo).
func newCUDA(ctx context.Context, o Options, pc map[string]any, explicit bool) (device.Accelerator, bool, error) {
	paths := nvidia.LibraryPaths
	if lp, ok := pc["library_path"].(string); ok && lp != "" {
		paths = []string{lp}
	}
	p, err := nvidia.New(nvidia.Options{Lib: nvidia.NewNVML(paths...), Engine: engineInfo(ctx, o), Config: pc, Log: o.Log.With("plugin", "cuda")})
	if errors.Is(err, nvidia.ErrUnavailable) {
		if explicit {
			o.Log.Warn("cuda plugin unavailable; offering cuda.device = 0", "reason", err)
			return nvidia.Unavailable(err.Error()), true, nil
		}
		o.Log.Info("no NVIDIA driver: cuda plugin not loaded", "reason", err)
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if p.GPUCount() == 0 && !explicit {
		_ = p.Close()
		o.Log.Info("NVML works but lists no GPU: cuda plugin not loaded")
		return nil, false, nil
	}
	inj, why := p.Injector()
	o.Log.Info("cuda plugin", "injector", inj, "why", why)
	return p, true, nil
}
