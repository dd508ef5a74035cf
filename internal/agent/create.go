package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"
	"golang.org/x/sys/unix"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/image"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/scratch"
	"github.com/bai-agent/bai-agent/internal/vfolder"
	"github.com/bai-agent/bai-agent/internal/wire"
)

// kernelTTY: kernel containers run with a TTY (as the Python agent
// creates them), so their log stream is raw.
const kernelTTY = true

// Container-side REPL ports of the kernel runner.
const (
	replInContainerPort  = 2000
	replOutContainerPort = 2001
)

// CreateKernels runs create_kernels: every kernel concurrently under the
// kernel-creation-concurrency semaphore. It returns the result list in
// request order, or the first error (kernels that did start stay up; the
// manager destroys the session, as with the Python agent).
func (a *Agent) CreateKernels(ctx context.Context, req *CreateRequest) ([]*KernelInfo, error) {
	if len(req.KernelIDs) != len(req.Configs) {
		return nil, fmt.Errorf("%w: %d kernel ids but %d configs", ErrInvalidArgument, len(req.KernelIDs), len(req.Configs))
	}
	seen := map[string]bool{}
	for _, id := range req.KernelIDs {
		if seen[id] {
			return nil, fmt.Errorf("%w: kernel id %s appears twice", ErrInvalidArgument, id)
		}
		seen[id] = true
	}
	out := make([]*KernelInfo, len(req.KernelIDs))
	errs := make([]error, len(req.KernelIDs))
	var wg sync.WaitGroup
	for i := range req.KernelIDs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ref, ok := req.ImageRefs[req.KernelIDs[i]]
			if !ok {
				var err error
				if ref, err = ImageRefOf(req.Configs[i].Image); err != nil {
					errs[i] = kernelErr(req.KernelIDs[i], fmt.Errorf("kernel_configs[%d].image: %w", i, err))
					return
				}
			}
			out[i], errs[i] = a.createKernel(ctx, req.SessionID, req.KernelIDs[i], &req.Configs[i], &req.Cluster, ref)
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// undo is a stack of release steps run in reverse on failure.
type undo []func()

func (u *undo) push(f func()) { *u = append(*u, f) }
func (u *undo) run() {
	for i := len(*u) - 1; i >= 0; i-- {
		(*u)[i]()
	}
	*u = nil
}

// Creation stages, for what a failure tells the manager. As with the
// Python agent, a failure before the container exists only raises (the
// manager may retry or reschedule); one while creating or starting the
// container also publishes kernel_terminated (failed-to-create), and one
// after it started publishes failed-to-start.
type createStage int

const (
	stagePrepare createStage = iota
	stageContainer
	stageStarted
)

func (a *Agent) createKernel(ctx context.Context, sessionID, kernelID string, cfg *CreationConfig, cluster *ClusterInfo, ref wire.ImageRef) (info *KernelInfo, err error) {
	log := a.log.With("kernel_id", kernelID, "session_id", sessionID)
	select {
	case <-a.closed:
		return nil, ErrAgentShuttingDown
	default:
	}
	policy := cfg.AutoPull
	if policy == "" {
		policy = cfg.Image.AutoPull
	}
	if err := ValidateAutoPull(policy); err != nil {
		return nil, kernelErr(kernelID, err)
	}
	k := &Kernel{
		Machine:   kernel.NewMachine(kernelID, kernel.Preparing),
		ID:        kernelID,
		SessionID: sessionID,
		ImageRef:  ref,
		Config:    *cfg,
		CreatedAt: time.Now(),
	}
	if err := a.register(k); err != nil {
		return nil, err
	}
	unlock, err := a.locks.lock(ctx, kernelID)
	if err != nil {
		a.unregister(kernelID, k)
		return nil, err
	}
	defer unlock()
	var rollback undo
	stage := stagePrepare
	defer func() {
		if err == nil {
			return
		}
		rollback.run()
		reason := ReasonFailedToCreate
		if stage == stageStarted {
			reason = ReasonFailedToStart
		}
		t := k.SetTermination(kernel.Termination{Reason: reason, ExitCode: -1})
		_ = k.Transition(kernel.Terminated, reason)
		a.unregister(kernelID, k)
		if stage == stagePrepare {
			log.Warn("kernel creation refused before any container existed; nothing is left", "error", err)
			return
		}
		log.Warn("kernel creation failed", "error", err, "reason", reason)
		a.events.Publish(context.WithoutCancel(ctx), event.KernelTerminated{KernelID: kernelID, SessionID: sessionID, Reason: t.Reason, ExitCode: t.ExitCode})
	}()

	select {
	case a.sem <- struct{}{}:
		defer func() { <-a.sem }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	lc := event.KernelLifecycle{KernelID: kernelID, SessionID: sessionID}
	a.events.Publish(ctx, event.KernelPreparing{KernelLifecycle: lc})

	// Image: by the name Docker knows it by (the short name of a local
	// image), pulled first when the auto_pull policy says so.
	imgName := image.DockerName(ref)
	if ref.Architecture != "" && image.NormalizeArch(ref.Architecture) != Architecture() {
		return nil, kernelErr(kernelID, fmt.Errorf("%w: cannot run %s image on %s machine", ErrUnsupportedArch, ref.Architecture, Architecture()))
	}
	img, need, err := a.checkImage(ctx, ref, cfg.Image.Digest, policy)
	if err != nil {
		return nil, kernelErr(kernelID, err)
	}
	if need {
		if err := k.Transition(kernel.Pulling, "pulling "+ref.Canonical()); err != nil {
			return nil, err
		}
		a.events.Publish(ctx, event.KernelPulling{KernelLifecycle: event.KernelLifecycle{KernelID: kernelID, SessionID: sessionID, Reason: ref.Canonical()}})
		log.Info("pulling image", "image", ref.Canonical())
		if err := a.pullImage(ctx, ref, cfg.Image.Registry, nil); err != nil {
			return nil, kernelErr(kernelID, err)
		}
		ictx, cancel := context.WithTimeout(ctx, inspectTimeout)
		img, err = a.be.InspectImage(ictx, imgName)
		cancel()
		if err != nil {
			return nil, kernelErr(kernelID, fmt.Errorf("inspect pulled image %s: %w", imgName, err))
		}
	}
	if img.Architecture != "" && image.NormalizeArch(img.Architecture) != Architecture() {
		return nil, kernelErr(kernelID, fmt.Errorf("%w: image %s is %s, this node is %s", ErrUnsupportedArch, imgName, img.Architecture, Architecture()))
	}
	info0, err := image.Parse(img.Labels, a.slotTypes)
	if err != nil {
		return nil, kernelErr(kernelID, fmt.Errorf("%w: %s: %v", ErrInvalidImage, imgName, err))
	}
	k.ImageName = imgName
	k.Kernelspec = info0.Kernelspec

	if err := k.Transition(kernel.Creating, "image ready"); err != nil {
		return nil, err
	}
	a.events.Publish(ctx, event.KernelCreating{KernelLifecycle: lc})

	// Validate everything that can be refused before taking anything.
	slots, err := a.alloc.Normalize(cfg.ResourceSlots)
	if err != nil {
		return nil, kernelErr(kernelID, err)
	}
	for _, s := range []resource.SlotName{"cpu", "mem"} {
		if !slots[s].IsPositive() {
			return nil, kernelErr(kernelID, fmt.Errorf("%w: resource slot %q is required and must be positive", resource.ErrInvalidArgument, s))
		}
	}
	for s, min := range info0.ResourceMin {
		if have, ok := slots[s]; ok && have.LessThan(min) {
			return nil, kernelErr(kernelID, fmt.Errorf("%w: %s=%s is below the image's minimum %s", resource.ErrInvalidArgument, s, resource.FormatAmount(have), resource.FormatAmount(min)))
		}
	}
	if cfg.ShmSize < 0 {
		return nil, kernelErr(kernelID, fmt.Errorf("%w: resource_opts.shmem must not be negative", resource.ErrInvalidArgument))
	}
	if cfg.ShmSize > 0 && decimal.NewFromInt(cfg.ShmSize).GreaterThan(slots["mem"]) {
		return nil, kernelErr(kernelID, fmt.Errorf("%w: resource_opts.shmem (%d bytes) is larger than the memory slot (%s bytes)", resource.ErrInvalidArgument, cfg.ShmSize, resource.FormatAmount(slots["mem"])))
	}
	var mreqs []vfolder.Request
	for _, m := range cfg.Mounts {
		mreqs = append(mreqs, vfolder.Request{Name: m.Name, HostPath: m.HostPath, KernelPath: m.KernelPath, Perm: m.MountPerm})
	}
	prevent, _ := cfg.InternalData["prevent_vfolder_mounts"].(bool)
	mounts, err := a.mounts.Validate(vfolder.Filter(mreqs, prevent))
	if err != nil {
		return nil, kernelErr(kernelID, err)
	}
	services := []image.ServicePort{
		{Name: "sshd", Protocol: "tcp", ContainerPorts: []int{2200}},
		{Name: "ttyd", Protocol: "http", ContainerPorts: []int{7681}},
	}
	if cfg.ClusterRole == "" || cfg.ClusterRole == "main" || cfg.ClusterRole == "master" {
		for _, sp := range info0.ServicePorts {
			for _, p := range sp.ContainerPorts {
				if p == 2200 || p == 7681 {
					return nil, kernelErr(kernelID, fmt.Errorf("%w: service %s conflicts with a built-in port", ErrInvalidImage, sp.Name))
				}
			}
			services = append(services, sp)
		}
		for _, p := range cfg.PreopenPorts {
			if p == replInContainerPort || p == replOutContainerPort {
				return nil, kernelErr(kernelID, fmt.Errorf("%w: preopen port %d is reserved for the kernel runner", ErrInvalidArgument, p))
			}
			for _, sp := range services {
				for _, cp := range sp.ContainerPorts {
					if cp == p {
						return nil, kernelErr(kernelID, fmt.Errorf("%w: preopen port %d conflicts with service %s", ErrInvalidArgument, p, sp.Name))
					}
				}
			}
			if p <= 1024 || p >= 65535 {
				return nil, kernelErr(kernelID, fmt.Errorf("%w: preopen port %d is out of range", ErrInvalidArgument, p))
			}
			services = append(services, image.ServicePort{Name: strconv.Itoa(p), Protocol: "preopen", ContainerPorts: []int{p}})
		}
	}

	// Allocation.
	alloc, err := a.alloc.Allocate(slots)
	if err != nil {
		// As the Python agent: any allocation failure asks the manager to
		// re-read this agent's capacity.
		a.events.Publish(ctx, event.DoAgentResourceCheck{AgentID: a.id})
		return nil, kernelErr(kernelID, err)
	}
	rollback.push(func() { a.alloc.Free(alloc) })
	k.Allocation = alloc

	// Host ports: two for the REPL plus one per service container port.
	nports := 2
	for _, sp := range services {
		nports += len(sp.ContainerPorts)
	}
	hostPorts, err := a.ports.Take(nports)
	if err != nil {
		return nil, kernelErr(kernelID, err)
	}
	rollback.push(func() { a.ports.Release(hostPorts...) })
	k.HostPorts = hostPorts
	k.ReplIn, k.ReplOut = hostPorts[0], hostPorts[1]
	next := 2
	for i := range services {
		services[i].HostPorts = nil
		for range services[i].ContainerPorts {
			services[i].HostPorts = append(services[i].HostPorts, hostPorts[next])
			next++
		}
	}
	k.Services = services

	// Scratch.
	sd, err := a.scratch.Create(ctx, kernelID)
	if err != nil {
		return nil, kernelErr(kernelID, err)
	}
	rollback.push(func() {
		if rerr := a.scratch.Remove(context.Background(), kernelID); rerr != nil {
			log.Error("scratch cleanup after failed creation", "error", rerr)
		}
	})
	k.Scratch = sd

	env := a.kernelEnviron(cfg, info0, alloc)
	k.Environ = env
	spec := &resource.Spec{Slots: slots, Allocation: alloc, ScratchSize: int64(a.cfg.Container.ScratchSize), Mounts: mounts}
	k.Spec = spec
	if err := a.writeKernelFiles(k, cluster); err != nil {
		return nil, kernelErr(kernelID, err)
	}

	cspec := a.containerSpec(k, cluster, mounts)
	stage = stageContainer
	cid, err := a.be.Create(ctx, cspec)
	if err != nil {
		return nil, kernelErr(kernelID, fmt.Errorf("%w: %v", ErrCreationFailed, err))
	}
	rollback.push(func() {
		if rerr := a.be.Remove(context.Background(), cid); rerr != nil {
			log.Error("container cleanup after failed creation", "container_id", cid, "error", rerr)
		}
	})
	k.setContainerID(cid)
	spec.ContainerID = cid
	if err := writeFileAtomic(filepath.Join(sd.Config, "resource.txt"), spec.Marshal(a.slotTypes), 0o644); err != nil {
		return nil, kernelErr(kernelID, err)
	}
	// [kernel-lifecycles] init-timeout-sec bounds bringing the kernel up.
	sctx, scancel := context.WithTimeout(ctx, time.Duration(float64(a.cfg.KernelLifecycles.InitTimeoutSec)*float64(time.Second)))
	defer scancel()
	if err := a.be.Start(sctx, cid); err != nil {
		return nil, kernelErr(kernelID, fmt.Errorf("%w: %v", ErrCreationFailed, err))
	}
	ins, err := a.be.Inspect(sctx, cid)
	if err != nil {
		return nil, kernelErr(kernelID, err)
	}
	k.setPid(ins.Pid)
	if err := checkPorts(ins, cspec.Ports); err != nil {
		return nil, kernelErr(kernelID, fmt.Errorf("%w: %v", ErrCreationFailed, err))
	}
	if !ins.Running {
		// It exited already: creation succeeded, the kernel died at once.
		// Report it as started and let the die event clean it up, as the
		// Python agent does.
		log.Warn("kernel exited right after start", "exit_code", ins.ExitCode)
	}
	if err := k.Transition(kernel.Running, "container started"); err != nil {
		return nil, err
	}
	rollback = nil
	info = a.kernelInfo(k)
	a.events.Publish(ctx, event.KernelStarted{KernelLifecycle: lc, CreationInfo: a.creationInfo(k)})
	if a.onChange != nil {
		a.onChange(kernelID, true)
	}
	log.Info("kernel started", "container_id", cid, "cpuset", cspec.CpusetCpus, "memory", cspec.Memory)
	if !ins.Running {
		a.requestSync()
	}
	return info, nil
}

func checkPorts(ins *backend.Container, want []backend.PortBinding) error {
	got := map[int]int{}
	for _, p := range ins.Ports {
		got[p.ContainerPort] = p.HostPort
	}
	for _, w := range want {
		if got[w.ContainerPort] != w.HostPort {
			return fmt.Errorf("container port %d is bound to host port %d, expected %d", w.ContainerPort, got[w.ContainerPort], w.HostPort)
		}
	}
	return nil
}

func (a *Agent) kernelEnviron(cfg *CreationConfig, info *image.Info, alloc resource.Allocation) map[string]string {
	env := map[string]string{}
	for k, v := range cfg.Environ {
		env[k] = v
	}
	uid, gid := a.cfg.Container.KernelUID, a.cfg.Container.KernelGID
	if uid == -1 {
		uid = os.Getuid()
	}
	if gid == -1 {
		gid = os.Getgid()
	}
	if cfg.UID != nil {
		env["LOCAL_USER_ID"] = strconv.Itoa(*cfg.UID)
	} else if info.HasFeature("uid-match") {
		env["LOCAL_USER_ID"] = strconv.Itoa(uid)
	}
	if cfg.MainGID != nil {
		env["LOCAL_GROUP_ID"] = strconv.Itoa(*cfg.MainGID)
	} else if info.HasFeature("uid-match") {
		env["LOCAL_GROUP_ID"] = strconv.Itoa(gid)
	}
	gids := append([]int{}, cfg.SupplementaryGIDs...)
	if cfg.MainGID != nil && info.HasFeature("uid-match") {
		gids = append(gids, gid)
	}
	if len(gids) > 0 {
		parts := make([]string, len(gids))
		for i, g := range gids {
			parts[i] = strconv.Itoa(g)
		}
		env["ADDITIONAL_GIDS"] = strings.Join(parts, ",")
	}
	cores := strconv.Itoa(device.CoreCount(alloc))
	for _, name := range info.CorecountEnvs {
		if _, set := env[name]; !set {
			env[name] = cores
		}
	}
	env["GPU_COUNT"] = "0"
	env["N_GPUS"] = "0"
	if _, ok := env["BACKENDAI_KERNEL_ID"]; !ok {
		env["BACKENDAI_KERNEL_ID"] = cfg.KernelID
	}
	var persistent []string
	for _, m := range cfg.Mounts {
		persistent = append(persistent, m.KernelPath)
	}
	if len(persistent) > 0 {
		env["BACKENDAI_PERSISTENT_PATHS"] = strings.Join(persistent, ":")
	}
	return env
}

func (a *Agent) writeKernelFiles(k *Kernel, cluster *ClusterInfo) error {
	cfgDir := k.Scratch.Config
	if err := writeFileAtomic(filepath.Join(cfgDir, "environ.txt"), environText(k.Environ), 0o644); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(cfgDir, "environ_base.txt"), environText(k.Environ), 0o644); err != nil {
		return err
	}
	rt := k.Spec.Marshal(a.slotTypes)
	if err := writeFileAtomic(filepath.Join(cfgDir, "resource.txt"), rt, 0o644); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(cfgDir, "resource_base.txt"), rt, 0o644); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(cfgDir, "recovery.json"), a.recoveryData(k, cluster)); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(cfgDir, kconfigFile), kconfig{Config: k.Config, Cluster: *cluster, ImageRef: k.ImageRef, ImageName: k.ImageName, HostPorts: k.HostPorts}); err != nil {
		return err
	}
	if k.Config.BootstrapScript != "" {
		if err := writeFileAtomic(filepath.Join(k.Scratch.Work, "bootstrap.sh"), []byte(k.Config.BootstrapScript), 0o755); err != nil {
			return err
		}
	}
	return nil
}

func (a *Agent) recoveryData(k *Kernel, cluster *ClusterInfo) *RecoveryData {
	driver := "bridge"
	if cluster.NetworkMode != "" {
		driver = cluster.NetworkMode
	}
	st := k.Config.SessionType
	if st == "" {
		st = "interactive"
	}
	return &RecoveryData{
		KernelType: "docker",
		ID:         k.ID,
		AgentID:    a.id,
		ImageRef:   k.ImageRef,
		Version:    k.Kernelspec,
		OwnershipData: OwnershipData{
			KernelID: k.ID, SessionID: k.SessionID, AgentID: a.id,
			OwnerUserID: strPtr(k.Config.OwnerUserID), OwnerProjectID: strPtr(k.Config.OwnerProjectID),
		},
		NetworkID:           k.Config.NetworkID,
		NetworkDriver:       driver,
		SessionType:         st,
		BlockServicePorts:   k.Config.BlockServicePorts,
		DomainSocketProxies: []any{},
		ServicePorts:        k.Services,
		ReplInPort:          k.ReplIn,
		ReplOutPort:         k.ReplOut,
	}
}

// hostLimit clamps a container ulimit to the agent's own hard limit:
// runc refuses to raise a limit above what the daemon may grant, and the
// agent usually runs with the same limits as dockerd. want -1 means
// unlimited.
func hostLimit(res int, want int64) int64 {
	var r unix.Rlimit
	if err := unix.Getrlimit(res, &r); err != nil || r.Max == unix.RLIM_INFINITY {
		return want
	}
	if want < 0 || int64(r.Max) < want {
		return int64(r.Max)
	}
	return want
}

func (a *Agent) containerSpec(k *Kernel, cluster *ClusterInfo, mounts []resource.Mount) *backend.ContainerSpec {
	cfg := &k.Config
	var cpuset string
	var memory int64
	for _, p := range a.plugins {
		r := p.Reserve(k.Allocation)
		if r.CpusetCpus != "" {
			cpuset = r.CpusetCpus
		}
		if r.Memory > 0 {
			memory = r.Memory
		}
	}
	env := make([]string, 0, len(k.Environ))
	for _, line := range strings.Split(strings.TrimSpace(string(environText(k.Environ))), "\n") {
		if line != "" {
			env = append(env, line)
		}
	}
	block := "0"
	if cfg.BlockServicePorts {
		block = "1"
	}
	var spLabel []string
	for _, sp := range k.Services {
		if sp.Name == "sshd" || sp.Name == "ttyd" || sp.Protocol == "internal" {
			continue
		}
		if len(sp.ContainerPorts) == 1 {
			spLabel = append(spLabel, fmt.Sprintf("%s:%s:%d", sp.Name, sp.Protocol, sp.ContainerPorts[0]))
		} else {
			ps := make([]string, len(sp.ContainerPorts))
			for i, p := range sp.ContainerPorts {
				ps[i] = strconv.Itoa(p)
			}
			spLabel = append(spLabel, fmt.Sprintf("%s:%s:[%s]", sp.Name, sp.Protocol, strings.Join(ps, ",")))
		}
	}
	labels := map[string]string{
		LabelAgentID:           a.id,
		LabelKernelID:          k.ID,
		LabelSessionID:         k.SessionID,
		LabelOwnerUserID:       cfg.OwnerUserID,
		LabelOwnerProjectID:    cfg.OwnerProjectID,
		LabelOwner:             a.id,
		LabelBlockServicePorts: block,
		LabelServicePorts:      strings.Join(spLabel, ","),
	}
	ms := []backend.Mount{
		{Type: "bind", Source: abs(k.Scratch.Config), Target: "/home/config", ReadOnly: true},
		{Type: "bind", Source: abs(k.Scratch.Work), Target: "/home/work"},
	}
	if k.Scratch.Tmp != "" {
		ms = append(ms, backend.Mount{Type: "bind", Source: abs(k.Scratch.Tmp), Target: "/tmp"})
	}
	for _, f := range []string{"/etc/localtime", "/etc/timezone"} {
		if _, err := os.Stat(f); err == nil {
			ms = append(ms, backend.Mount{Type: "bind", Source: f, Target: f, ReadOnly: true})
		}
	}
	for _, m := range mounts {
		t := "bind"
		if m.IsVolume() {
			t = "volume"
		}
		ms = append(ms, backend.Mount{Type: t, Source: m.Source, Target: m.Target, ReadOnly: m.Perm == resource.PermRO})
	}
	var pb []backend.PortBinding
	pb = append(pb,
		backend.PortBinding{ContainerPort: replInContainerPort, Protocol: "tcp", HostIP: "127.0.0.1", HostPort: k.ReplIn},
		backend.PortBinding{ContainerPort: replOutContainerPort, Protocol: "tcp", HostIP: "127.0.0.1", HostPort: k.ReplOut},
	)
	for _, sp := range k.Services {
		hostIP := a.bindHost
		if sp.Name == "ttyd" && a.cfg.Agent.ScalingGroupType == "storage" {
			hostIP = "127.0.0.1"
		}
		for i, cp := range sp.ContainerPorts {
			pb = append(pb, backend.PortBinding{ContainerPort: cp, Protocol: "tcp", HostIP: hostIP, HostPort: sp.HostPorts[i]})
		}
	}
	hostname := cfg.ClusterHostname
	if hostname == "" {
		role := cfg.ClusterRole
		if role == "" {
			role = "main"
		}
		hostname = fmt.Sprintf("%s%d", role, cfg.ClusterIdx)
	}
	spec := &backend.ContainerSpec{
		Name:       fmt.Sprintf("kernel.%s.%s", k.ImageRef.ShortName(), k.ID),
		Image:      k.ImageName,
		Labels:     labels,
		Env:        env,
		WorkingDir: "/home/work",
		Hostname:   hostname,
		Tty:        kernelTTY,
		OpenStdin:  true,
		StopSignal: "SIGINT",
		Init:       true,
		CapAdd:     []string{"IPC_LOCK", "SYS_NICE"},
		Ulimits: []backend.Ulimit{
			{Name: "nofile", Soft: hostLimit(unix.RLIMIT_NOFILE, 1048576), Hard: hostLimit(unix.RLIMIT_NOFILE, 1048576)},
			{Name: "memlock", Soft: hostLimit(unix.RLIMIT_MEMLOCK, -1), Hard: hostLimit(unix.RLIMIT_MEMLOCK, -1)},
		},
		CpusetCpus: cpuset,
		Memory:     memory,
		ShmSize:    cfg.ShmSize,
		PidsLimit:  a.cfg.Container.PidsLimit,
		Mounts:     ms,
		Ports:      pb,
		// [container-logs]: the total split over 5 rotated files.
		LogDriver:      a.cfg.ContainerLogs.Driver,
		LogOpts:        map[string]string{"max-size": strconv.FormatInt(int64(a.cfg.ContainerLogs.MaxLength)/5, 10), "max-file": "5", "compress": "false"},
		NetworkAliases: nil,
	}
	quota := a.cfg.Container.CPUQuota
	if cfg.CPUQuota != nil {
		quota = *cfg.CPUQuota
	}
	if quota {
		cpus := k.Allocation.Total("cpu")
		spec.NanoCPUs = cpus.Mul(decimal.NewFromInt(1e9)).IntPart()
	}
	rbps, wbps := int64(a.cfg.Container.ScratchReadBps), int64(a.cfg.Container.ScratchWriteBps)
	if cfg.IOReadBps > 0 {
		rbps = cfg.IOReadBps
	}
	if cfg.IOWriteBps > 0 {
		wbps = cfg.IOWriteBps
	}
	if rbps > 0 || wbps > 0 {
		if dev := scratch.BlockDevice(k.Scratch.Work); dev != "" {
			if rbps > 0 {
				spec.ReadBps = []backend.Throttle{{Path: dev, Rate: uint64(rbps)}}
			}
			if wbps > 0 {
				spec.WriteBps = []backend.Throttle{{Path: dev, Rate: uint64(wbps)}}
			}
		} else {
			a.log.Warn("scratch is not on a block device; I/O throttling not applied", "kernel_id", k.ID, "scratch", k.Scratch.Work)
		}
	}
	if cluster.NetworkName != "" && (cluster.NetworkMode == "" || cluster.NetworkMode == "bridge") {
		spec.Network = cluster.NetworkName
		spec.NetworkAliases = []string{hostname}
	}
	if k.Config.StartupCommand != "" && k.Config.SessionType == "batch" {
		// Until the in-container runner exists, a batch kernel runs its
		// startup command as the container command.
		spec.Cmd = []string{"/bin/sh", "-c", k.Config.StartupCommand}
	}
	return spec
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func (a *Agent) kernelHost() string {
	if a.khost != "" {
		return a.khost
	}
	if a.cfg.Container.AdvertisedHost != "" {
		return a.cfg.Container.AdvertisedHost
	}
	if a.cfg.Container.BindHost != "" && a.cfg.Container.BindHost != "0.0.0.0" {
		return a.cfg.Container.BindHost
	}
	if h := a.cfg.Agent.RPCListenAddr.Host; h != "" && h != "0.0.0.0" {
		return h
	}
	return "127.0.0.1"
}

func (a *Agent) attachedDevices(alloc resource.Allocation) map[string]any {
	out := map[string]any{}
	for _, p := range a.plugins {
		var devs []any
		for _, d := range p.AttachedDevices(alloc) {
			devs = append(devs, map[string]any{"device_id": d.DeviceID, "model_name": d.ModelName, "data": d.Data})
		}
		if devs == nil {
			devs = []any{}
		}
		out[string(p.Key())] = devs
	}
	return out
}

// resourceSpecWire is KernelResourceSpec.to_json_serializable_dict().
func (a *Agent) resourceSpecWire(k *Kernel) map[string]any {
	slots := map[string]any{}
	for s, v := range k.Spec.Slots {
		slots[string(s)] = resource.FormatAmount(v)
	}
	allocs := map[string]any{}
	for s, per := range k.Allocation {
		devName := string(s.DeviceName())
		dm, _ := allocs[devName].(map[string]any)
		if dm == nil {
			dm = map[string]any{}
			allocs[devName] = dm
		}
		pd := map[string]any{}
		for id, v := range per {
			pd[string(id)] = resource.FormatAmount(v)
		}
		dm[string(s)] = pd
	}
	ms := make([]any, len(k.Spec.Mounts))
	for i, m := range k.Spec.Mounts {
		ms[i] = m.String()
	}
	return map[string]any{"container_id": k.ContainerID(), "slots": slots, "allocations": allocs, "scratch_disk_size": k.Spec.ScratchSize, "mounts": ms}
}

func (a *Agent) kernelInfo(k *Kernel) *KernelInfo {
	return &KernelInfo{
		ID:              k.ID,
		KernelHost:      a.kernelHost(),
		ReplInPort:      k.ReplIn,
		ReplOutPort:     k.ReplOut,
		ServicePorts:    publicServices(k.Services),
		ContainerID:     k.ContainerID(),
		ResourceSpec:    a.resourceSpecWire(k),
		AttachedDevices: a.attachedDevices(k.Allocation),
		AgentAddr:       k.Config.AgentAddr,
		ScalingGroup:    k.Config.ScalingGroup,
	}
}

func publicServices(sp []image.ServicePort) []image.ServicePort {
	var out []image.ServicePort
	for _, s := range sp {
		if s.Protocol != "internal" {
			out = append(out, s)
		}
	}
	return out
}

// creationInfo is kernel_started's KernelCreationInfo. Intrinsic slots
// (cpu, mem) carry null model/processing/memory figures, as upstream's
// UsedDevice.from_model_info without a device model.
func (a *Agent) creationInfo(k *Kernel) event.CreationInfo {
	units := map[string]map[string]event.UsedDevice{}
	for _, p := range a.plugins {
		per := map[string]event.UsedDevice{}
		for _, s := range p.Slots() {
			for id, v := range k.Allocation[s.Name] {
				if !v.IsPositive() {
					continue
				}
				u, ok := per[string(id)]
				if !ok {
					u = event.UsedDevice{Used: map[string]string{}}
				}
				u.Used[string(s.Name)] = resource.FormatAmount(v)
				per[string(id)] = u
			}
		}
		units[string(p.Key())] = per
	}
	sp := make([]event.ServicePortInfo, 0)
	for _, s := range publicServices(k.Services) {
		sp = append(sp, event.ServicePortInfo(s))
	}
	return event.CreationInfo{
		ContainerID: k.ContainerID(), KernelHost: a.kernelHost(), ReplInPort: k.ReplIn, ReplOutPort: k.ReplOut,
		ServicePorts: sp, UsedDevices: event.UsedDevices{Units: units},
	}
}
