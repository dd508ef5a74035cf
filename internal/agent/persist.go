package agent

import (
	"sort"
	"strings"

	"github.com/bai-agent/bai-agent/internal/image"
	"github.com/bai-agent/bai-agent/internal/wire"
)

// RecoveryData is config/recovery.json, in the field names and shapes of
// the Python agent's KernelRecoveryScratchData, so either agent can adopt
// the other's kernels.
type RecoveryData struct {
	KernelType          string              `json:"kernel_type"`
	ID                  string              `json:"id"`
	AgentID             string              `json:"agent_id"`
	ImageRef            wire.ImageRef       `json:"image_ref"`
	Version             int                 `json:"version"`
	OwnershipData       OwnershipData       `json:"ownership_data"`
	NetworkID           string              `json:"network_id"`
	NetworkDriver       string              `json:"network_driver"`
	SessionType         string              `json:"session_type"`
	BlockServicePorts   bool                `json:"block_service_ports"`
	DomainSocketProxies []any               `json:"domain_socket_proxies"`
	ServicePorts        []image.ServicePort `json:"service_ports"`
	ReplInPort          int                 `json:"repl_in_port"`
	ReplOutPort         int                 `json:"repl_out_port"`
}

// OwnershipData is KernelOwnershipData.
type OwnershipData struct {
	KernelID       string  `json:"kernel_id"`
	SessionID      string  `json:"session_id"`
	AgentID        string  `json:"agent_id"`
	OwnerUserID    *string `json:"owner_user_id"`
	OwnerProjectID *string `json:"owner_project_id"`
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// environText renders environ.txt (K=V lines, sorted for stable output).
func environText(env map[string]string) []byte {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + env[k] + "\n")
	}
	return []byte(b.String())
}

func parseEnviron(b []byte) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			out[k] = v
		}
	}
	return out
}

// kconfigFile holds what restart_kernel needs to recreate a container
// (the Python agent pickles this into kconfig.dat; we keep JSON).
const kconfigFile = "kconfig.json"

type kconfig struct {
	Config    CreationConfig `json:"config"`
	Cluster   ClusterInfo    `json:"cluster"`
	ImageRef  wire.ImageRef  `json:"image_ref"`
	ImageName string         `json:"image_name"`
	HostPorts []int          `json:"host_ports"`
	// RuntimeType/RuntimePath are the runner's arguments (the image's
	// runtime labels), kept for restart and recovery.
	RuntimeType string `json:"runtime_type,omitempty"`
	RuntimePath string `json:"runtime_path,omitempty"`
}
