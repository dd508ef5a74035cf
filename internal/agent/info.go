package agent

import (
	"runtime"

	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/sandbox"
)

// InfoOptions are the parts of agent_info that come from the RPC side.
type InfoOptions struct {
	IP        string // the advertised host ("" : rpc-listen-addr's)
	Addr      string // tcp://host:port the manager connects to
	PublicKey string // Z85 CURVE public key, "" without CURVE
}

// AgentInfo builds the heartbeat's agent_info. It does no I/O.
func (a *Agent) AgentInfo(o InfoOptions) event.AgentInfo {
	publicHost := a.cfg.Agent.PublicHost
	if publicHost == "" {
		publicHost = a.cfg.Container.AdvertisedHost
	}
	if publicHost == "" {
		publicHost = a.cfg.Container.BindHost
	}
	plugins := map[string]event.PluginInfo{}
	for _, p := range a.plugins {
		pi := event.PluginInfo{Version: p.Version()}
		if p.Key() == "cpu" {
			pi.Extra = map[string]any{"agent_version": Version, "machine": Architecture(), "os_type": runtime.GOOS}
		}
		if acc, ok := p.(device.Accelerator); ok {
			pi.Extra = acc.ExtraInfo()
		}
		plugins[string(p.Key())] = pi
	}
	ip := o.IP
	if ip == "" {
		ip = a.cfg.Agent.RPCListenAddr.Host
	}
	return event.AgentInfo{
		IP: ip, Region: a.cfg.Agent.Region, ScalingGroup: a.cfg.Agent.InitialResourceGroupName, Addr: o.Addr,
		PublicKey: o.PublicKey, PublicHost: publicHost, Version: Version, Architecture: Architecture(),
		Plugins: plugins, Available: a.alloc.Available(), SlotTypes: a.slotTypes,
		AutoTerminateAbusing: a.cfg.Agent.ForceTerminateAbusingContainers,
	}
}

// StatTarget is what the monitor needs to measure a kernel.
type StatTarget struct {
	KernelID, SessionID, UserID, ProjectID, ContainerID string
	Pid                                                 int
	ScratchDir                                          string
	ScratchSize                                         int64
	// NoHostProcesses: the kernel's processes are not host processes
	// (gVisor), so per-process figures are unavailable.
	NoHostProcesses bool
}

// StatTargets lists the running kernels with a known main PID.
func (a *Agent) StatTargets() []StatTarget {
	var out []StatTarget
	for _, k := range a.Kernels() {
		s := k.Spec()
		if k.State() != "running" || s == nil || s.Pid <= 0 {
			continue
		}
		out = append(out, StatTarget{
			KernelID: k.ID, SessionID: k.SessionID, UserID: s.Config.OwnerUserID, ProjectID: s.Config.OwnerProjectID,
			ContainerID: s.ContainerID, Pid: s.Pid, ScratchDir: s.Scratch.Work, ScratchSize: int64(a.cfg.Container.ScratchSize),
			NoHostProcesses: sandbox.IsGVisor(s.OCIRuntime),
		})
	}
	return out
}
