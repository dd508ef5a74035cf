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
	if c.Labels[backend.LabelProbe] != "" {
		return "" // a backend's image probe, never a kernel
	}
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
		if c.Labels[backend.LabelProbe] != "" {
			continue // a backend's image probe: it removes itself
		}
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
		a.reportVanished(ctx, id)
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
		CreatedAt: c.StartedAt,
	}
	s := &KernelSpec{Scratch: sd, ContainerID: c.ID, Pid: c.Pid, OCIRuntime: c.Runtime}
	var rec RecoveryData
	if err := readJSON(sd.Config, "recovery.json", &rec); err == nil {
		s.ImageRef = rec.ImageRef
		s.Kernelspec = rec.Version
		s.Services = rec.ServicePorts
		s.ReplIn, s.ReplOut = rec.ReplInPort, rec.ReplOutPort
		s.Config.OwnerUserID = derefStr(rec.OwnershipData.OwnerUserID)
		s.Config.OwnerProjectID = derefStr(rec.OwnershipData.OwnerProjectID)
		s.Config.NetworkID = rec.NetworkID
		s.Config.SessionType = rec.SessionType
		s.Config.BlockServicePorts = rec.BlockServicePorts
	} else {
		a.log.Warn("recovery.json unreadable; rebuilding from the container", "kernel_id", kid, "error", err)
	}
	var kc kconfig
	if err := readJSON(sd.Config, kconfigFile, &kc); err == nil {
		s.Config = kc.Config
		s.ImageName = kc.ImageName
		k.Network = kc.Cluster.kernelNetwork()
		s.RuntimeType, s.RuntimePath = kc.RuntimeType, kc.RuntimePath
	} else if pkc, perr := readPythonKconfig(sd.Config); perr == nil {
		// A kernel the Python agent started: its pickled creation config
		// becomes ours, kept as kconfig.json so restart_kernel works.
		pkc.ImageRef, pkc.ImageName = s.ImageRef, c.Image
		pkc.Config = withoutSecrets(&pkc.Config)
		pkc.RuntimeType = pkc.Config.Image.Labels["ai.backend.runtime-type"]
		pkc.RuntimePath = pkc.Config.Image.Labels["ai.backend.runtime-path"]
		s.Config, s.ImageName = pkc.Config, c.Image
		k.Network = pkc.Cluster.kernelNetwork()
		s.RuntimeType, s.RuntimePath = pkc.RuntimeType, pkc.RuntimePath
		if err := writeJSON(sd.Config, kconfigFile, pkc); err != nil {
			a.log.Warn("restart data of a Python agent's kernel not saved", "kernel_id", kid, "error", err)
		} else {
			a.log.Info("adopted a kernel started by the Python agent", "kernel_id", kid)
		}
	}
	if b, err := readScratchFile(sd.Config, "environ.txt"); err == nil {
		s.Environ = parseEnviron(b)
	}
	// Allocation: resource.txt first; the container's own limits if the
	// scratch is gone (the Python agent refused to start then, #5117).
	if b, err := readScratchFile(sd.Config, "resource.txt"); err == nil {
		spec, perr := resource.ParseSpec(b, a.slotTypes)
		if perr != nil {
			return perr
		}
		s.Resources = spec
		s.Allocation = spec.Allocation
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
		s.Allocation = alloc
		s.Resources = &resource.Spec{ContainerID: c.ID, Allocation: alloc, Slots: resource.Slots{"cpu": alloc.Total("cpu"), "mem": alloc.Total("mem")}}
	}
	over, err := a.alloc.Restore(s.Allocation)
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
				s.ReplIn = p.HostPort
			}
			if p.ContainerPort == replOutContainerPort {
				s.ReplOut = p.HostPort
			}
		}
	}
	if conflicts := a.ports.Discard(hostPorts...); len(conflicts) > 0 {
		a.log.Warn("adopted kernel uses host ports outside the pool or twice", "kernel_id", kid, "ports", conflicts)
	}
	s.HostPorts = hostPorts
	k.publish(s)
	if err := a.register(k); err != nil {
		a.alloc.Free(s.Allocation)
		a.ports.Release(hostPorts...)
		return err
	}
	if a.krunner != "" && s.ReplIn > 0 && s.ReplOut > 0 {
		// Re-attach to the kernel's runner (it kept running while the
		// agent was away); a batch job's result still arrives through it.
		if _, err := a.connectRunner(k, s); err != nil {
			a.log.Warn("runner of an adopted kernel not reached", "kernel_id", kid, "error", err)
		} else if s.Config.SessionType == "batch" {
			a.resumeBatch(k)
		}
	}
	a.log.Info("kernel adopted", "kernel_id", kid, "container_id", c.ID, "cpuset", c.CpusetCpus)
	a.events.Publish(ctx, event.KernelStarted{
		KernelLifecycle: event.KernelLifecycle{KernelID: kid, SessionID: k.SessionID, Reason: ReasonResumingOperation}, CreationInfo: a.creationInfo(k.Spec()),
	})
	return nil
}

func derefStr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// reportVanished tells the manager that a kernel whose scratch is left
// but whose container is gone has ended: the agent died while it was
// being restarted (the old container removed, the new one not made yet)
// or created, and nobody else will report it. Its session comes from the
// kernel's own files; without them nothing can be said.
func (a *Agent) reportVanished(ctx context.Context, kernelID string) {
	sd := a.scratch.Paths(kernelID)
	var kc kconfig
	if err := readJSON(sd.Config, kconfigFile, &kc); err != nil || kc.Config.SessionID == "" {
		return
	}
	a.log.Warn("kernel's container vanished while the agent was away; reported terminated", "kernel_id", kernelID, "session_id", kc.Config.SessionID)
	a.events.Publish(ctx, event.KernelTerminated{KernelID: kernelID, SessionID: kc.Config.SessionID, Reason: ReasonContainerNotFound, ExitCode: -1})
}
