package sandbox

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend"
)

// ProbeImage is the image the probe container runs: an empty root file
// system imported by the agent itself (no registry is needed), into which
// the probe binary is bind-mounted.
const ProbeImage = "bai-agent/sandbox-probe:1"

// probeTarget is where the probe binary is mounted in the container.
const probeTarget = "/probe"

// Importer is implemented by backends that can import an image from a
// root file system archive (docker import).
type Importer interface {
	ImportImage(ctx context.Context, ref string, rootfs io.Reader) error
}

// Probe is the start-up check of a runtime.
type Probe struct {
	Backend backend.Backend
	// Binary is a static executable on the host run in the probe
	// container (the kernel runner); Args its arguments, which must make
	// it exit 0.
	Binary string
	Args   []string
	// Timeout bounds the whole probe (default 60 s).
	Timeout time.Duration
}

// Check proves that the engine knows runtime and that a container starts
// and exits 0 with it, with the same network and init as kernels. The
// probe container is removed whatever happens. The error names the
// runtime and carries the engine's own message.
func (p Probe) Check(ctx context.Context, runtime string) error {
	if p.Timeout == 0 {
		p.Timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	if runtime != RuntimeDefault {
		ei, ok := p.Backend.(backend.EngineInspector)
		if !ok {
			return fmt.Errorf("sandbox runtime %q: this container backend cannot list its runtimes", runtime)
		}
		info, err := ei.EngineInfo(ctx)
		if err != nil {
			return fmt.Errorf("sandbox runtime %q: engine info: %w", runtime, err)
		}
		if !slices.Contains(info.Runtimes, runtime) {
			return fmt.Errorf("sandbox runtime %q is not registered with the container engine (it has: %s); add it to dockerd's daemon.json \"runtimes\" and reload dockerd", runtime, strings.Join(info.Runtimes, ", "))
		}
	}
	if p.Binary == "" {
		return nil
	}
	if err := p.ensureImage(ctx); err != nil {
		return fmt.Errorf("sandbox runtime %q: probe image: %w", Name(runtime), err)
	}
	spec := &backend.ContainerSpec{
		Name:  fmt.Sprintf("bai-sandbox-probe-%d", time.Now().UnixNano()),
		Image: ProbeImage,
		// The backends' probe label (recovery skips such containers), and
		// an image's kernel labels overridden, as for ReadImageFile.
		Labels: map[string]string{backend.LabelProbe: "sandbox",
			"ai.backend.owner": "", "ai.backend.kernel-id": "", "ai.backend.session-id": ""},
		Entrypoint: append([]string{probeTarget}, p.Args...),
		Init:       true,
		Runtime:    runtime,
		Mounts:     []backend.Mount{{Type: "bind", Source: p.Binary, Target: probeTarget, ReadOnly: true}},
	}
	id, err := p.Backend.Create(ctx, spec)
	if err != nil {
		return fmt.Errorf("sandbox runtime %q: create a probe container: %w", Name(runtime), err)
	}
	defer func() {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer rcancel()
		_ = p.Backend.Remove(rctx, id)
	}()
	if err := p.Backend.Start(ctx, id); err != nil {
		return fmt.Errorf("sandbox runtime %q: a container does not start with it: %w", Name(runtime), err)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := p.Backend.Inspect(ctx, id)
		if err != nil {
			return fmt.Errorf("sandbox runtime %q: inspect the probe container: %w", Name(runtime), err)
		}
		if !c.Running && c.Status != "created" {
			if c.ExitCode != 0 {
				out, _ := p.Backend.Logs(ctx, id, false, 4096)
				return fmt.Errorf("sandbox runtime %q: the probe container exited %d: %s", Name(runtime), c.ExitCode, strings.TrimSpace(string(out)))
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sandbox runtime %q: the probe container did not exit within %s", Name(runtime), p.Timeout)
		case <-tick.C:
		}
	}
}

func (p Probe) ensureImage(ctx context.Context) error {
	if _, err := p.Backend.InspectImage(ctx, ProbeImage); err == nil {
		return nil
	} else if !errors.Is(err, backend.ErrNotFound) {
		return err
	}
	im, ok := p.Backend.(Importer)
	if !ok {
		return errors.New("this container backend cannot import images")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"dev/", "proc/", "sys/", "etc/", "tmp/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return im.ImportImage(ctx, ProbeImage, &buf)
}
