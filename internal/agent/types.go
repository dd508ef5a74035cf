package agent

import (
	"encoding/json"
	"fmt"

	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/image"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/wire"
)

// RegistryInfo is the registry part of an ImageConfig. The credentials
// are used for the pull and never written anywhere (json:"-": not in
// kconfig.json, which the kernel can read as /home/config/kconfig.json).
type RegistryInfo struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	Username string `json:"-"`
	Password string `json:"-"`
}

// ImageConfig is the manager's description of a kernel image.
type ImageConfig struct {
	Canonical    string            `json:"canonical"`
	Project      string            `json:"project"`
	Architecture string            `json:"architecture"`
	Digest       string            `json:"digest"`
	RepoDigest   string            `json:"repo_digest"`
	Registry     RegistryInfo      `json:"registry"`
	Labels       map[string]string `json:"labels"`
	IsLocal      bool              `json:"is_local"`
	AutoPull     string            `json:"auto_pull"`
}

// MountSpec is one VFolderMount of a creation config.
type MountSpec struct {
	Name       string `json:"name"`
	VFID       string `json:"vfid"`
	VFSubpath  string `json:"vfsubpath"`
	HostPath   string `json:"host_path"`
	KernelPath string `json:"kernel_path"`
	MountPerm  string `json:"mount_perm"`
	UsageMode  string `json:"usage_mode"`
}

// CreationConfig is the manager's KernelCreationConfig (spec 3.1), with
// the fields the agent reads.
type CreationConfig struct {
	Image              ImageConfig       `json:"image"`
	KernelID           string            `json:"kernel_id"`
	SessionID          string            `json:"session_id"`
	OwnerUserID        string            `json:"owner_user_id"`
	OwnerProjectID     string            `json:"owner_project_id"`
	NetworkID          string            `json:"network_id"`
	AutoPull           string            `json:"auto_pull"`
	SessionType        string            `json:"session_type"`
	ClusterMode        string            `json:"cluster_mode"`
	ClusterRole        string            `json:"cluster_role"`
	ClusterIdx         int               `json:"cluster_idx"`
	ClusterHostname    string            `json:"cluster_hostname"`
	LocalRank          int               `json:"local_rank"`
	UID                *int              `json:"uid"`
	MainGID            *int              `json:"main_gid"`
	SupplementaryGIDs  []int             `json:"supplementary_gids"`
	ResourceSlots      map[string]string `json:"resource_slots"`
	ResourceOpts       map[string]any    `json:"resource_opts"`
	Environ            map[string]string `json:"environ"`
	Mounts             []MountSpec       `json:"mounts"`
	IdleTimeout        int               `json:"idle_timeout"`
	BootstrapScript    string            `json:"bootstrap_script"`
	StartupCommand     string            `json:"startup_command"`
	PreopenPorts       []int             `json:"preopen_ports"`
	AllocatedHostPorts []int             `json:"allocated_host_ports"`
	AgentAddr          string            `json:"agent_addr"`
	ScalingGroup       string            `json:"scaling_group"`
	EndpointID         string            `json:"endpoint_id"`
	InternalData       map[string]any    `json:"internal_data"`
	// ShmSize is resource_opts.shmem in bytes (0: Docker's default).
	ShmSize int64 `json:"-"`
	// BlockServicePorts is internal_data.block_service_ports.
	BlockServicePorts bool `json:"-"`
	// IOReadBps/IOWriteBps are resource_opts io_read_bps/io_write_bps
	// (bytes per second on the scratch device; 0: the agent's default).
	IOReadBps  int64 `json:"io_read_bps,omitempty"`
	IOWriteBps int64 `json:"io_write_bps,omitempty"`
	// CPUQuota is resource_opts cpu_quota (nil: the agent's default).
	CPUQuota *bool `json:"cpu_quota,omitempty"`
}

// ClusterInfo is the manager's ClusterInfo.
type ClusterInfo struct {
	Mode        string         `json:"mode"`
	Size        int            `json:"size"`
	Replicas    map[string]int `json:"replicas"`
	NetworkMode string         `json:"network_mode"`
	NetworkName string         `json:"network_name"`
	// SSHKeypair is the session-wide key kernels use to reach each other
	// (cluster_info.ssh_keypair). It is written to config/ssh and never
	// kept in the agent's own records.
	SSHKeypair *SSHKeypair `json:"-"`
	// SSHPortMapping is cluster_ssh_port_mapping: where each kernel's
	// SSH server is reachable in host-network sessions.
	SSHPortMapping map[string]HostPort `json:"ssh_port_mapping,omitempty"`
}

// SSHKeypair is an OpenSSH public key line and its PEM private key.
type SSHKeypair struct {
	PublicKey  string
	PrivateKey string
}

// HostPort is an address and port; it is a two-item list in JSON, as
// the manager's tuples are in port-mapping.json.
type HostPort struct {
	Host string
	Port int
}

// MarshalJSON writes [host, port].
func (h HostPort) MarshalJSON() ([]byte, error) { return json.Marshal([]any{h.Host, h.Port}) }

// UnmarshalJSON reads [host, port].
func (h *HostPort) UnmarshalJSON(b []byte) error {
	var v []json.RawMessage
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if len(v) != 2 {
		return fmt.Errorf("host and port: want 2 items, got %d", len(v))
	}
	if err := json.Unmarshal(v[0], &h.Host); err != nil {
		return err
	}
	return json.Unmarshal(v[1], &h.Port)
}

// hostNetwork reports whether the session's kernels share their hosts'
// network namespaces.
func (c *ClusterInfo) hostNetwork() bool { return c != nil && c.NetworkMode == "host" }

// kernelNetwork is what Kernel.Network records: the network's name, or
// "host".
func (c *ClusterInfo) kernelNetwork() string {
	if c.hostNetwork() {
		return "host"
	}
	return c.NetworkName
}

// CreateRequest is one create_kernels call.
type CreateRequest struct {
	SessionID string
	KernelIDs []string
	Configs   []CreationConfig
	Cluster   ClusterInfo
	ImageRefs map[string]wire.ImageRef
}

// KernelInfo is one kernel of create_kernels' result (the rpc package
// renders it as the manager's dict).
type KernelInfo struct {
	ID           string
	KernelHost   string
	ReplInPort   int
	ReplOutPort  int
	ServicePorts []image.ServicePort
	ContainerID  string
	// Spec is the kernel's resource spec (slots, allocations, scratch
	// size, mounts).
	Spec *resource.Spec
	// Attached lists each plugin's devices in the allocation, by plugin
	// key.
	Attached     map[string][]device.AttachedDevice
	AgentAddr    string
	ScalingGroup string
}

// RestartInfo is restart_kernel's result.
type RestartInfo struct {
	ContainerID  string
	ReplInPort   int
	ReplOutPort  int
	ServicePorts []image.ServicePort
}
