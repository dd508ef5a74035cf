package agent

import (
	"context"
	"fmt"

	"github.com/bai-agent/bai-agent/internal/sandbox"
)

// checkSandbox is the start-up check of [container] sandbox-type: the
// engine knows the runtime and a container starts with it (the runner
// binary run as a probe). The engine's default runtime is not probed.
func (a *Agent) checkSandbox(ctx context.Context) error {
	if a.sandbox.Node == sandbox.RuntimeDefault {
		return nil
	}
	be := a.be
	if tb, ok := be.(*timedBackend); ok {
		be = tb.inner
	}
	p := sandbox.Probe{Backend: be, Binary: a.krunner, Args: []string{"probe"}}
	if a.krunner == "" {
		a.log.Warn("kernel-runner is off: the sandbox runtime is checked for registration only, no probe container is started", "runtime", a.sandbox.Node)
	}
	if err := p.Check(ctx, a.sandbox.Node); err != nil {
		return fmt.Errorf("container.sandbox-type = %q: %w", a.cfg.Container.SandboxType, err)
	}
	a.log.Info("sandbox runtime ready", "runtime", a.sandbox.Node)
	return nil
}
