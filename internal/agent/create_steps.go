package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/image"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/safefs"
	"github.com/bai-agent/bai-agent/internal/scratch"
	"github.com/bai-agent/bai-agent/internal/vfolder"
	"github.com/bai-agent/bai-agent/internal/wire"
)

// createStage says how far a creation got, for what a failure tells the
// manager (createFailed).
type createStage int

const (
	stagePrepare   createStage = iota // nothing exists outside the agent
	stageContainer                    // the container exists (created, maybe not started)
	stageStarted                      // the container was started
)

// createJob is what one kernel's creation carries from step to step.
type createJob struct {
	a *Agent
	k *Kernel
	// ks is the kernel's spec, built here and published by the last step
	// (readers see nil until then).
	ks      *KernelSpec
	cfg     *CreationConfig
	cluster *ClusterInfo
	ref     wire.ImageRef
	policy  string
	lc      event.KernelLifecycle
	log     *slog.Logger
	stage   createStage

	img      *backend.Image
	labels   *image.Info
	slots    resource.Slots
	mounts   []resource.Mount
	services []image.ServicePort
	alloc    resource.Allocation
	ports    []int
	models   []ModelConfig // an inference session's models
	scratch  scratch.Dir
	spec     *backend.ContainerSpec
	cid      string
	inspect  *backend.Container
	info     *KernelInfo
}

// createSteps is a kernel's creation, in order. A step that takes
// something gives it back in its undo; a later step (the kernel runner's
// handshake, accelerator devices) is one more entry here.
var createSteps = []step[*createJob]{
	{name: "image", do: (*createJob).image},
	{name: "validate", do: (*createJob).validate},
	{name: "allocate", do: (*createJob).allocate, undo: (*createJob).free},
	{name: "ports", do: (*createJob).takePorts, undo: (*createJob).releasePorts},
	{name: "scratch", do: (*createJob).makeScratch, undo: (*createJob).removeScratch},
	{name: "files", do: (*createJob).writeFiles},
	{name: "container", mark: func(j *createJob) { j.stage = stageContainer }, do: (*createJob).createContainer, undo: (*createJob).removeContainer},
	{name: "start", do: (*createJob).start},
	{name: "wait-ready", mark: func(j *createJob) { j.stage = stageStarted }, do: (*createJob).waitReady},
	{name: "runner", do: (*createJob).runner, undo: (*createJob).closeRunner},
	{name: "publish", do: (*createJob).publish},
}

// image finds the image under the name Docker knows it by (the short name
// of a local image), pulls it first when the auto_pull policy says so,
// and parses its labels.
func (j *createJob) image(ctx context.Context) error {
	a, k, ref := j.a, j.k, j.ref
	a.events.Publish(ctx, event.KernelPreparing{KernelLifecycle: j.lc})
	name := image.DockerName(ref)
	if ref.Architecture != "" && image.NormalizeArch(ref.Architecture) != Architecture() {
		return fmt.Errorf("%w: cannot run %s image on %s machine", ErrUnsupportedArch, ref.Architecture, Architecture())
	}
	img, need, err := a.checkImage(ctx, ref, j.cfg.Image.Digest, j.policy)
	if err != nil {
		return err
	}
	if need {
		if err := k.Transition(kernel.Pulling, "pulling "+ref.Canonical()); err != nil {
			return err
		}
		a.events.Publish(ctx, event.KernelPulling{KernelLifecycle: event.KernelLifecycle{KernelID: k.ID, SessionID: k.SessionID, Reason: ref.Canonical()}})
		j.log.Info("pulling image", "image", ref.Canonical())
		if err := a.pullImage(ctx, ref, j.cfg.Image.Registry, nil); err != nil {
			return err
		}
		if img, err = a.be.InspectImage(ctx, name); err != nil {
			return fmt.Errorf("inspect pulled image %s: %w", name, err)
		}
	}
	if img.Architecture != "" && image.NormalizeArch(img.Architecture) != Architecture() {
		return fmt.Errorf("%w: image %s is %s, this node is %s", ErrUnsupportedArch, name, img.Architecture, Architecture())
	}
	labels, err := image.Parse(img.Labels, a.slotTypes)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidImage, name, err)
	}
	j.img, j.labels = img, labels
	j.ks.ImageName = name
	j.ks.Kernelspec = labels.Kernelspec
	if err := k.Transition(kernel.Creating, "image ready"); err != nil {
		return err
	}
	a.events.Publish(ctx, event.KernelCreating{KernelLifecycle: j.lc})
	return nil
}

// validate checks everything that can be refused before anything is
// taken: slots, shared memory, mounts, service ports.
func (j *createJob) validate(context.Context) error {
	a, cfg := j.a, j.cfg
	slots, err := a.alloc.Normalize(cfg.ResourceSlots)
	if err != nil {
		return err
	}
	for _, s := range []resource.SlotName{"cpu", "mem"} {
		if !slots[s].IsPositive() {
			return fmt.Errorf("%w: resource slot %q is required and must be positive", resource.ErrInvalidArgument, s)
		}
	}
	for s, min := range j.labels.ResourceMin {
		if have, ok := slots[s]; ok && have.LessThan(min) {
			return fmt.Errorf("%w: %s=%s is below the image's minimum %s", resource.ErrInvalidArgument, s, resource.FormatAmount(have), resource.FormatAmount(min))
		}
	}
	if cfg.ShmSize < 0 {
		return fmt.Errorf("%w: resource_opts.shmem must not be negative", resource.ErrInvalidArgument)
	}
	if cfg.ShmSize > 0 && decimal.NewFromInt(cfg.ShmSize).GreaterThan(slots["mem"]) {
		return fmt.Errorf("%w: resource_opts.shmem (%d bytes) is larger than the memory slot (%s bytes)", resource.ErrInvalidArgument, cfg.ShmSize, resource.FormatAmount(slots["mem"]))
	}
	var mreqs []vfolder.Request
	for _, m := range cfg.Mounts {
		mreqs = append(mreqs, vfolder.Request{Name: m.Name, HostPath: m.HostPath, KernelPath: m.KernelPath, Perm: m.MountPerm})
	}
	prevent, _ := cfg.InternalData["prevent_vfolder_mounts"].(bool)
	mounts, err := a.mounts.Validate(vfolder.Filter(mreqs, prevent))
	if err != nil {
		return err
	}
	services, err := servicePorts(cfg, j.labels)
	if err != nil {
		return err
	}
	if err := validateNetwork(j.cluster); err != nil {
		return err
	}
	if cfg.SessionType == "inference" {
		models, added, err := modelDefinition(cfg, services)
		if err != nil {
			return err
		}
		services = append(services, added...)
		j.models = models
	}
	j.slots, j.mounts, j.services = slots, mounts, services
	return nil
}

// servicePorts lists a kernel's services: the built-in sshd and ttyd, and
// on the main kernel the image's labelled services and the preopen ports.
func servicePorts(cfg *CreationConfig, labels *image.Info) ([]image.ServicePort, error) {
	services := []image.ServicePort{
		{Name: "sshd", Protocol: "tcp", ContainerPorts: []int{2200}},
		{Name: "ttyd", Protocol: "http", ContainerPorts: []int{7681}},
	}
	if !isMainRole(cfg.ClusterRole) {
		return services, nil
	}
	for _, sp := range labels.ServicePorts {
		for _, p := range sp.ContainerPorts {
			if p == 2200 || p == 7681 {
				return nil, fmt.Errorf("%w: service %s conflicts with a built-in port", ErrInvalidImage, sp.Name)
			}
		}
		services = append(services, sp)
	}
	for _, p := range cfg.PreopenPorts {
		if p == replInContainerPort || p == replOutContainerPort {
			return nil, fmt.Errorf("%w: Port 2000 and 2001 are reserved for internal use", ErrReservedPort)
		}
		for _, sp := range services {
			for _, cp := range sp.ContainerPorts {
				if cp == p {
					return nil, fmt.Errorf("%w: Port %d overlaps with built-in service %s", ErrPortConflict, p, sp.Name)
				}
			}
		}
		if p <= 1024 || p >= 65535 {
			return nil, fmt.Errorf("%w: preopen port %d is out of range", ErrInvalidArgument, p)
		}
		services = append(services, image.ServicePort{Name: strconv.Itoa(p), Protocol: "preopen", ContainerPorts: []int{p}})
	}
	// Host ports the manager allocated for the session (host-network
	// clusters): internal entries "hostport<i>", the same number inside
	// and outside, never shown to users.
	for i, p := range cfg.AllocatedHostPorts {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("%w: allocated_host_ports[%d] = %d is out of range", ErrInvalidArgument, i, p)
		}
		services = append(services, image.ServicePort{Name: fmt.Sprintf("hostport%d", i+1), Protocol: "internal", ContainerPorts: []int{p}, HostPorts: []int{p}})
	}
	return services, nil
}

// fixedHostPorts reports whether a service's host ports are given (the
// manager's allocated host ports) rather than taken from the pool.
func fixedHostPorts(sp image.ServicePort) bool {
	return sp.Protocol == "internal" && len(sp.HostPorts) == len(sp.ContainerPorts) && len(sp.HostPorts) > 0
}

// allocate takes the kernel's slots (all or nothing). Any allocation
// failure asks the manager to re-read this agent's capacity, as the
// Python agent does.
func (j *createJob) allocate(ctx context.Context) error {
	for _, acc := range j.a.accels {
		if rc, ok := acc.(device.RequestChecker); ok {
			if err := rc.CheckRequest(j.slots); err != nil {
				return err
			}
		}
	}
	alloc, err := j.a.alloc.Allocate(j.slots)
	if err != nil {
		j.a.events.Publish(ctx, event.DoAgentResourceCheck{AgentID: j.a.id})
		return err
	}
	j.alloc = alloc
	j.ks.Allocation = alloc
	return nil
}

func (j *createJob) free(context.Context) {
	if j.alloc != nil {
		j.a.alloc.Free(j.alloc)
		j.alloc = nil
	}
}

// takePorts takes two host ports for the REPL plus one per service
// container port.
func (j *createJob) takePorts(context.Context) error {
	if j.cluster.hostNetwork() {
		taken, err := j.hostNetworkPorts()
		if err != nil {
			return err
		}
		j.ports = taken
		j.ks.HostPorts = taken
		j.ks.Services = j.services
		return nil
	}
	n := 2
	for _, sp := range j.services {
		if !fixedHostPorts(sp) {
			n += len(sp.ContainerPorts)
		}
	}
	hostPorts, err := j.a.ports.Take(n)
	if err != nil {
		return err
	}
	j.ks.ReplIn, j.ks.ReplOut = hostPorts[0], hostPorts[1]
	next := 2
	for i := range j.services {
		if fixedHostPorts(j.services[i]) {
			// Allocated through assign_port on this agent: the kernel's
			// now, released with it (the manager never releases them).
			for _, p := range j.services[i].HostPorts {
				if j.a.claimAssigned(p) {
					hostPorts = append(hostPorts, p)
				}
			}
			continue
		}
		j.services[i].HostPorts = nil
		for range j.services[i].ContainerPorts {
			j.services[i].HostPorts = append(j.services[i].HostPorts, hostPorts[next])
			next++
		}
	}
	j.ports = hostPorts
	j.ks.HostPorts = hostPorts
	j.ks.Services = j.services
	return nil
}

func (j *createJob) releasePorts(context.Context) {
	j.a.ports.Release(j.ports...)
	j.ports = nil
}

func (j *createJob) makeScratch(ctx context.Context) error {
	sd, err := j.a.scratch.Create(ctx, j.k.ID)
	if err != nil {
		return err
	}
	j.scratch = sd
	j.ks.Scratch = sd
	return nil
}

// removeScratch removes a scratch this creation made (scratch.Create
// removes its own leftovers when it fails; a scratch that already existed
// is never this creation's).
func (j *createJob) removeScratch(ctx context.Context) {
	if j.scratch.Base == "" {
		return
	}
	j.scratch = scratch.Dir{}
	if err := j.a.scratch.Remove(ctx, j.k.ID); err != nil {
		j.log.Error("scratch cleanup after failed creation", "error", err)
	}
}

// writeFiles writes the kernel's config files (environ, resource spec,
// recovery data) into its scratch; the scratch's undo removes them.
func (j *createJob) writeFiles(ctx context.Context) error {
	a, k := j.a, j.k
	j.ks.Environ = a.kernelEnviron(j.cfg, j.labels, j.alloc, a.imageUser(ctx, j.img))
	modelEnviron(j.ks.Environ, j.models)
	j.ks.RuntimeType, j.ks.RuntimePath = j.labels.RuntimeType, j.labels.RuntimePath
	j.ks.Resources = &resource.Spec{Slots: j.slots, Allocation: j.alloc, ScratchSize: int64(a.cfg.Container.ScratchSize), Mounts: j.mounts, Extra: map[string]string{}}
	for _, acc := range a.accels {
		for key, v := range acc.ResourceData(j.alloc) {
			j.ks.Resources.Extra[key] = v
		}
	}
	if err := a.writeKernelFiles(k, j.ks, j.cluster); err != nil {
		return err
	}
	return a.writeClusterFiles(k, j.ks, j.cluster)
}

func (j *createJob) createContainer(ctx context.Context) error {
	a, k := j.a, j.k
	if err := checkMountSources(j.mounts); err != nil {
		return err
	}
	spec, err := a.containerSpec(ctx, k, j.ks, j.cluster, j.mounts)
	if err != nil {
		return err
	}
	j.spec = spec
	cid, err := a.be.Create(ctx, j.spec)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCreationFailed, err)
	}
	j.cid = cid
	j.ks.ContainerID = cid
	j.ks.Resources.ContainerID = cid
	j.ks.OCIRuntime = j.spec.Runtime
	return writeScratchFile(j.scratch.Config, "resource.txt", j.ks.Resources.Marshal(a.slotTypes), 0o644, safefs.NoOwner)
}

func (j *createJob) removeContainer(ctx context.Context) {
	if j.cid == "" {
		return
	}
	cid := j.cid
	j.cid = ""
	if err := j.a.be.Remove(ctx, cid); err != nil {
		j.log.Error("container cleanup after failed creation", "container_id", cid, "error", err)
	}
}

// start starts the container within [kernel-lifecycles] init-timeout-sec.
func (j *createJob) start(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, seconds(j.a.cfg.KernelLifecycles.InitTimeoutSec))
	defer cancel()
	if err := j.a.be.Start(sctx, j.cid); err != nil {
		return fmt.Errorf("%w: %v", ErrCreationFailed, err)
	}
	return nil
}

// waitReady reads the started container back and checks its host ports.
// (The kernel runner's handshake joins here, after stage = stageStarted.)
func (j *createJob) waitReady(ctx context.Context) error {
	ins, err := j.a.be.Inspect(ctx, j.cid)
	if err != nil {
		return err
	}
	j.ks.Pid = ins.Pid
	if err := checkPorts(ins, j.spec.Ports); err != nil {
		return fmt.Errorf("%w: %v", ErrCreationFailed, err)
	}
	if !ins.Running {
		// It exited already: creation succeeded, the kernel died at once.
		// It is reported as started and the die event cleans it up, as the
		// Python agent does.
		j.log.Warn("kernel exited right after start", "exit_code", ins.ExitCode)
	}
	j.inspect = ins
	return nil
}

// publish makes the kernel RUNNING and tells the manager.
func (j *createJob) publish(ctx context.Context) error {
	a, k := j.a, j.k
	// Readers see the whole spec at once, before the kernel runs.
	k.publish(j.ks)
	if err := k.Transition(kernel.Running, "container started"); err != nil {
		return err
	}
	j.info = a.kernelInfo(k, j.ks)
	a.events.Publish(ctx, event.KernelStarted{KernelLifecycle: j.lc, CreationInfo: a.creationInfo(j.ks)})
	if a.onChange != nil {
		a.onChange(k.ID, true)
	}
	j.log.Info("kernel started", "container_id", j.cid, "cpuset", j.spec.CpusetCpus, "memory", j.spec.Memory)
	if !j.inspect.Running {
		a.requestSync()
	}
	if len(j.models) > 0 && isMainRole(j.cfg.ClusterRole) {
		a.startModelServices(k, j.models, j.img.Cmd)
	}
	return nil
}

// isMainRole reports whether a cluster role runs the session's services.
func isMainRole(role string) bool { return role == "" || role == "main" || role == "master" }

// seconds converts a config duration.
func seconds(d config.Duration) time.Duration {
	return time.Duration(float64(d) * float64(time.Second))
}
