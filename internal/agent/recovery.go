package agent

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/resource"
)

// kernelIDOf finds the kernel id of an owned container: the kernel-id
// label, else the last dot-separated field of the name (the real agent's
// convention).
func kernelIDOf(c *backend.Container) string {
	if id := c.Labels[LabelKernelID]; id != "" {
		return id
	}
	name := c.Name
	if i := strings.LastIndex(name, "."); i >= 0 {
		name = name[i+1:]
	}
	if _, err := uuid.Parse(name); err == nil {
		return name
	}
	return ""
}

func (a *Agent) ownerFilter() map[string]string { return map[string]string{LabelOwner: a.id} }

// recover rebuilds the registry from this agent's containers plus their
// scratch files, cleans dead and half-created containers, and removes
// scratch directories nobody owns.
func (a *Agent) recover(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	list, err := a.be.List(lctx, a.ownerFilter())
	cancel()
	if err != nil {
		return err
	}
	owned := map[string]bool{}
	for _, c := range list {
		kid := kernelIDOf(&c)
		if kid == "" {
			a.log.Warn("owned container without a kernel id; removing", "container_id", c.ID, "name", c.Name)
			_ = a.be.Remove(ctx, c.ID)
			continue
		}
		ins, err := a.be.Inspect(ctx, c.ID)
		if err != nil {
			if errors.Is(err, backend.ErrNotFound) {
				continue
			}
			return err
		}
		if ins.Alive() {
			if err := a.adopt(ctx, kid, ins); err != nil {
				a.log.Error("cannot adopt running kernel; destroying it", "kernel_id", kid, "error", err)
				a.destroyStray(ctx, kid, ins, ReasonUnknownContainer)
				continue
			}
			owned[kid] = true
			continue
		}
		// Dead or never started (the agent died between create and start).
		a.destroyStray(ctx, kid, ins, ReasonSelfTerminated)
	}
	ids, err := a.scratch.List()
	if err != nil {
		a.log.Warn("list scratch", "error", err)
	}
	for _, id := range ids {
		if owned[id] {
			continue
		}
		a.log.Info("removing orphaned scratch", "kernel_id", id)
		if err := a.scratch.Remove(ctx, id); err != nil {
			a.log.Error("remove orphaned scratch", "kernel_id", id, "error", err)
		}
	}
	return nil
}

// destroyStray removes a container that has no live registry entry, with
// its scratch, and tells the manager.
func (a *Agent) destroyStray(ctx context.Context, kid string, c *backend.Container, reason string) {
	exit := -1
	if !c.Alive() && c.Status == "exited" {
		exit = c.ExitCode
	}
	if c.Alive() {
		if err := a.be.Stop(ctx, c.ID, a.stopTime); err != nil {
			a.log.Warn("stop stray container", "container_id", c.ID, "error", err)
		}
	}
	if err := a.be.Remove(ctx, c.ID); err != nil {
		a.log.Error("remove stray container", "container_id", c.ID, "error", err)
		return
	}
	if err := a.scratch.Remove(ctx, kid); err != nil {
		a.log.Error("remove stray scratch", "kernel_id", kid, "error", err)
	}
	a.events.Publish(ctx, event.KernelTerminated{KernelID: kid, SessionID: c.Labels[LabelSessionID], Reason: reason, ExitCode: exit})
}

// adopt re-registers a running kernel with the same allocation, ports and
// scratch, without touching the container.
func (a *Agent) adopt(ctx context.Context, kid string, c *backend.Container) error {
	sd := a.scratch.Paths(kid)
	for _, m := range c.Mounts {
		if m.Target == "/home/config" {
			sd.Config = m.Source
			sd.Base = filepath.Dir(m.Source)
			sd.Work = filepath.Join(sd.Base, "work")
		}
	}
	k := &Kernel{
		Machine:   kernel.NewMachine(kid, kernel.Running),
		ID:        kid,
		SessionID: c.Labels[LabelSessionID],
		Scratch:   sd,
		CreatedAt: c.StartedAt,
	}
	k.setContainerID(c.ID)
	k.setPid(c.Pid)
	var rec RecoveryData
	if err := readJSON(sd.Config, "recovery.json", &rec); err == nil {
		k.ImageRef = rec.ImageRef
		k.Kernelspec = rec.Version
		k.Services = rec.ServicePorts
		k.ReplIn, k.ReplOut = rec.ReplInPort, rec.ReplOutPort
		k.Config.OwnerUserID = derefStr(rec.OwnershipData.OwnerUserID)
		k.Config.OwnerProjectID = derefStr(rec.OwnershipData.OwnerProjectID)
		k.Config.NetworkID = rec.NetworkID
		k.Config.SessionType = rec.SessionType
		k.Config.BlockServicePorts = rec.BlockServicePorts
	} else {
		a.log.Warn("recovery.json unreadable; rebuilding from the container", "kernel_id", kid, "error", err)
	}
	var kc kconfig
	if err := readJSON(sd.Config, kconfigFile, &kc); err == nil {
		k.Config = kc.Config
		k.ImageName = kc.ImageName
		k.Network = kc.Cluster.kernelNetwork()
		k.RuntimeType, k.RuntimePath = kc.RuntimeType, kc.RuntimePath
	} else if pkc, perr := readPythonKconfig(sd.Config); perr == nil {
		// A kernel the Python agent started: its pickled creation config
		// becomes ours, kept as kconfig.json so restart_kernel works.
		pkc.ImageRef, pkc.ImageName = k.ImageRef, c.Image
		pkc.Config = withoutSecrets(&pkc.Config)
		pkc.RuntimeType = pkc.Config.Image.Labels["ai.backend.runtime-type"]
		pkc.RuntimePath = pkc.Config.Image.Labels["ai.backend.runtime-path"]
		k.Config, k.ImageName = pkc.Config, c.Image
		k.Network = pkc.Cluster.kernelNetwork()
		k.RuntimeType, k.RuntimePath = pkc.RuntimeType, pkc.RuntimePath
		if err := writeJSON(sd.Config, kconfigFile, pkc); err != nil {
			a.log.Warn("restart data of a Python agent's kernel not saved", "kernel_id", kid, "error", err)
		} else {
			a.log.Info("adopted a kernel started by the Python agent", "kernel_id", kid)
		}
	}
	if b, err := readScratchFile(sd.Config, "environ.txt"); err == nil {
		k.Environ = parseEnviron(b)
		k.publishOwner()
	}
	// Allocation: resource.txt first; the container's own limits if the
	// scratch is gone (the Python agent refused to start then, #5117).
	if b, err := readScratchFile(sd.Config, "resource.txt"); err == nil {
		spec, perr := resource.ParseSpec(b, a.slotTypes)
		if perr != nil {
			return perr
		}
		k.Spec = spec
		k.Allocation = spec.Allocation
	} else {
		a.log.Warn("resource.txt missing; using the container's cpuset and memory limit", "kernel_id", kid)
		alloc := resource.Allocation{}
		if cores, err := device.ParseCPUList(c.CpusetCpus); err == nil && len(cores) > 0 {
			per := map[resource.DeviceID]decimal.Decimal{}
			for _, core := range cores {
				per[resource.DeviceID(strconv.Itoa(core))] = decimal.NewFromInt(1)
			}
			alloc["cpu"] = per
		}
		if c.Memory > 0 {
			alloc["mem"] = map[resource.DeviceID]decimal.Decimal{"root": decimal.NewFromInt(c.Memory)}
		}
		k.Allocation = alloc
		k.Spec = &resource.Spec{ContainerID: c.ID, Allocation: alloc, Slots: resource.Slots{"cpu": alloc.Total("cpu"), "mem": alloc.Total("mem")}}
	}
	over, err := a.alloc.Restore(k.Allocation)
	if err != nil {
		return err
	}
	if over {
		a.log.Warn("adopted kernel overcommits a device (the node shrank or the config changed)", "kernel_id", kid)
	}
	var hostPorts []int
	for _, p := range c.Ports {
		if p.HostPort > 0 {
			hostPorts = append(hostPorts, p.HostPort)
			if p.ContainerPort == replInContainerPort {
				k.ReplIn = p.HostPort
			}
			if p.ContainerPort == replOutContainerPort {
				k.ReplOut = p.HostPort
			}
		}
	}
	if conflicts := a.ports.Discard(hostPorts...); len(conflicts) > 0 {
		a.log.Warn("adopted kernel uses host ports outside the pool or twice", "kernel_id", kid, "ports", conflicts)
	}
	k.HostPorts = hostPorts
	if err := a.register(k); err != nil {
		a.alloc.Free(k.Allocation)
		a.ports.Release(hostPorts...)
		return err
	}
	if a.krunner != "" && k.ReplIn > 0 && k.ReplOut > 0 {
		// Re-attach to the kernel's runner (it kept running while the
		// agent was away); a batch job's result still arrives through it.
		if _, err := a.connectRunner(k); err != nil {
			a.log.Warn("runner of an adopted kernel not reached", "kernel_id", kid, "error", err)
		} else if k.Config.SessionType == "batch" {
			a.resumeBatch(k)
		}
	}
	a.log.Info("kernel adopted", "kernel_id", kid, "container_id", c.ID, "cpuset", c.CpusetCpus)
	a.events.Publish(ctx, event.KernelStarted{
		KernelLifecycle: event.KernelLifecycle{KernelID: kid, SessionID: k.SessionID, Reason: ReasonResumingOperation}, CreationInfo: a.creationInfo(k),
	})
	return nil
}

func derefStr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
