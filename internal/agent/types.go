package agent

import (
	"github.com/bai-agent/bai-agent/internal/image"
	"github.com/bai-agent/bai-agent/internal/wire"
)

// RegistryInfo is the registry part of an ImageConfig.
type RegistryInfo struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
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
}

// CreateRequest is one create_kernels call.
type CreateRequest struct {
	SessionID string
	KernelIDs []string
	Configs   []CreationConfig
	Cluster   ClusterInfo
	ImageRefs map[string]wire.ImageRef
}

// KernelInfo is one element of create_kernels' result list.
type KernelInfo struct {
	ID              string
	KernelHost      string
	ReplInPort      int
	ReplOutPort     int
	ServicePorts    []image.ServicePort
	ContainerID     string
	ResourceSpec    map[string]any
	AttachedDevices map[string]any
	AgentAddr       string
	ScalingGroup    string
}

// Wire renders the result dict exactly as the Python agent returns it.
func (k *KernelInfo) Wire() map[string]any {
	sp := make([]any, 0, len(k.ServicePorts))
	for _, p := range k.ServicePorts {
		sp = append(sp, servicePortWire(p))
	}
	return map[string]any{
		"id":               k.ID,
		"kernel_host":      k.KernelHost,
		"repl_in_port":     k.ReplInPort,
		"repl_out_port":    k.ReplOutPort,
		"stdin_port":       0,
		"stdout_port":      0,
		"service_ports":    sp,
		"container_id":     k.ContainerID,
		"resource_spec":    k.ResourceSpec,
		"attached_devices": k.AttachedDevices,
		"agent_addr":       k.AgentAddr,
		"scaling_group":    k.ScalingGroup,
	}
}

func servicePortWire(p image.ServicePort) map[string]any {
	cp := make([]any, len(p.ContainerPorts))
	for i, v := range p.ContainerPorts {
		cp[i] = v
	}
	hp := make([]any, len(p.HostPorts))
	for i, v := range p.HostPorts {
		hp[i] = v
	}
	return map[string]any{"name": p.Name, "protocol": p.Protocol, "container_ports": cp, "host_ports": hp, "is_inference": p.IsInference}
}

// RestartInfo is restart_kernel's result.
type RestartInfo struct {
	ContainerID  string
	ReplInPort   int
	ReplOutPort  int
	ServicePorts []image.ServicePort
}

// Wire renders the result dict.
func (r *RestartInfo) Wire() map[string]any {
	sp := make([]any, 0, len(r.ServicePorts))
	for _, p := range r.ServicePorts {
		sp = append(sp, servicePortWire(p))
	}
	return map[string]any{"container_id": r.ContainerID, "repl_in_port": r.ReplInPort, "repl_out_port": r.ReplOutPort, "stdin_port": 0, "stdout_port": 0, "service_ports": sp}
}
