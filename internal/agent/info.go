package agent

import (
	"context"
	"runtime"
	"strings"

	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/image"
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

// Images lists the kernel images on the node for installed_image:{id}
// as upstream's scan_images does: every tag as Docker knows it (a local
// image is reported by its short name), kernelspec 1-1, with the image's
// own architecture (inspected once per image id and remembered).
func (a *Agent) Images(ctx context.Context) ([]map[string]any, error) {
	imgs, err := a.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(imgs))
	for _, i := range imgs {
		if ks := i.Labels["ai.backend.kernelspec"]; ks != "" && ks != "1" {
			continue
		}
		arch, ok := a.imageArch.Load(i.ID)
		if !ok {
			full, err := a.be.InspectImage(ctx, i.ID)
			if err != nil {
				continue // removed meanwhile; the next pass sees the truth
			}
			arch = image.NormalizeArch(full.Architecture)
			if arch == "" {
				arch = "x86_64"
			}
			a.imageArch.Store(i.ID, arch)
		}
		for _, t := range i.Tags {
			if strings.HasSuffix(t, "<none>") {
				continue
			}
			out = append(out, map[string]any{"canonical": t, "digest": i.ID, "architecture": arch})
		}
	}
	return out, nil
}

// StatTarget is what the monitor needs to measure a kernel.
type StatTarget struct {
	KernelID, SessionID, UserID, ProjectID, ContainerID string
	Pid                                                 int
	ScratchDir                                          string
	ScratchSize                                         int64
}

// StatTargets lists the running kernels with a known main PID.
func (a *Agent) StatTargets() []StatTarget {
	var out []StatTarget
	for _, k := range a.Kernels() {
		if k.State() != "running" || k.Pid() <= 0 {
			continue
		}
		out = append(out, StatTarget{
			KernelID: k.ID, SessionID: k.SessionID, UserID: k.Config.OwnerUserID, ProjectID: k.Config.OwnerProjectID,
			ContainerID: k.ContainerID(), Pid: k.Pid(), ScratchDir: k.Scratch.Work, ScratchSize: int64(a.cfg.Container.ScratchSize),
		})
	}
	return out
}
