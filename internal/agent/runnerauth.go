package agent

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/bai-agent/bai-agent/internal/coderunner"
	"github.com/bai-agent/bai-agent/internal/krunner/kauth"
	"github.com/bai-agent/bai-agent/internal/safefs"
)

// writeRunnerAuth gives a new kernel its runner secret (kauth): CURVE
// keys for the REPL ports, so that only this agent's client key gets
// code run (the ports are reachable from the host's local users and
// from other containers on the bridge), and the web terminal's token.
// The file is 0600 and the agent's (root's): in the container only root
// reads it, and the runner's entrypoint hands it on before it becomes
// the kernel user. /home/config is read-only there, so what the agent
// reads back later is what it wrote.
func writeRunnerAuth(cfgDir string) error {
	s, err := kauth.Generate()
	if err != nil {
		return err
	}
	b, err := s.Marshal()
	if err != nil {
		return err
	}
	if err := writeScratchFile(cfgDir, kauth.File, b, 0o600, safefs.NoOwner); err != nil {
		return fmt.Errorf("runner secret: %w", err)
	}
	return nil
}

// readRunnerAuth reads a kernel's runner secret back; (nil, nil) when it
// has none: a kernel the Python agent started, whose runner (upstream's)
// serves the NULL mechanism.
func readRunnerAuth(cfgDir string) (*kauth.Secrets, error) {
	b, err := readScratchFile(cfgDir, kauth.File)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runner secret: %w", err)
	}
	if len(b) > kauth.MaxSize {
		return nil, fmt.Errorf("runner secret: %d bytes (at most %d)", len(b), kauth.MaxSize)
	}
	return kauth.Parse(b)
}

// runnerCurve is the CURVE client configuration for a kernel's runner,
// nil for a runner without a secret (NULL mechanism, for adoption).
func runnerCurve(kernelID string, ks *KernelSpec) (*coderunner.Curve, error) {
	s, err := readRunnerAuth(ks.Scratch.Config)
	if s == nil || err != nil {
		return nil, err
	}
	if s.ClientSecret == "" {
		return nil, fmt.Errorf("runner secret of kernel %s has no client key", kernelID)
	}
	return &coderunner.Curve{ServerPublic: s.ServerPublic, ClientPublic: s.ClientPublic, ClientSecret: s.ClientSecret}, nil
}
