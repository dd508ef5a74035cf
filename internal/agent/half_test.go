package agent

import (
	"github.com/bai-agent/bai-agent/internal/backend"
)

// halfSpec is a container as a crash between docker create and docker
// start leaves it: owned and labelled, never started.
func halfSpec(e *env, kid string) *backend.ContainerSpec {
	return &backend.ContainerSpec{
		Name:  "kernel.half." + kid,
		Image: e.image,
		Labels: map[string]string{
			LabelOwner: e.cfg.Agent.ID, LabelAgentID: e.cfg.Agent.ID, LabelKernelID: kid, LabelSessionID: kid,
		},
	}
}
