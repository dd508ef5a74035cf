package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"
	"golang.org/x/sys/unix"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/image"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/safefs"
	"github.com/bai-agent/bai-agent/internal/sandbox"
	"github.com/bai-agent/bai-agent/internal/scratch"
)

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

// kernelIDs is the uid/gid uid-match images get: [container] kernel-uid
// and kernel-gid, or the agent's own when they are -1, except that the
// agent's own root is never taken implicitly: then the image's own user
// (imageUser).
func (a *Agent) kernelIDs(imageUser [2]int) (uid, gid int) {
	uid, gid = a.cfg.Container.KernelUID, a.cfg.Container.KernelGID
	if uid == -1 {
		if uid = os.Getuid(); uid == 0 {
			uid = imageUser[0]
		}
	}
	if gid == -1 {
		if gid = os.Getgid(); gid == 0 {
			gid = imageUser[1]
		}
	}
	return uid, gid
}

func (a *Agent) kernelEnviron(cfg *CreationConfig, info *image.Info, alloc resource.Allocation, imageUser [2]int) map[string]string {
	env := map[string]string{}
	for k, v := range cfg.Environ {
		// validateCreation refused these already; a config read back
		// from disk (restart, adoption) is not trusted more.
		if _, owned := agentOwnedEnv[k]; owned || !validEnvKey(k) || strings.ContainsAny(v, "\x00\n\r") {
			continue
		}
		env[k] = v
	}
	uid, gid := a.kernelIDs(imageUser)
	// uid-match gives the kernel the agent's own uid, as upstream; but a
	// root agent with no kernel-uid configured would run strangers' code
	// as root that way (and their notebooks land in vfolders owned by
	// root): then kernelIDs names the image's own unprivileged user (its
	// "work" user, else 1000). Other images get that user too. uid 0 only
	// when configured or sent by the manager. The ids are always set
	// (never left to the image's own ENV, which a committed image of a
	// user controls), so the agent knows whom the kernel's files belong
	// to.
	if !info.HasFeature("uid-match") {
		uid, gid = imageUser[0], imageUser[1]
	}
	if cfg.UID != nil {
		uid = *cfg.UID
	}
	if cfg.MainGID != nil {
		env["LOCAL_GROUP_ID"] = strconv.Itoa(*cfg.MainGID)
	} else {
		env["LOCAL_GROUP_ID"] = strconv.Itoa(gid)
	}
	env["LOCAL_USER_ID"] = strconv.Itoa(uid)
	gids := append([]int{}, cfg.SupplementaryGIDs...)
	if cfg.MainGID != nil && info.HasFeature("uid-match") {
		gids = append(gids, gid)
	}
	parts := make([]string, len(gids))
	for i, g := range gids {
		parts[i] = strconv.Itoa(g)
	}
	env["ADDITIONAL_GIDS"] = strings.Join(parts, ",") // "" overrides an image's ENV too
	cores := strconv.Itoa(device.CoreCount(alloc))
	for _, name := range info.CorecountEnvs {
		if _, set := env[name]; !set {
			env[name] = cores
		}
	}
	// GPU_*: from the first accelerator type in allocation order, as
	// upstream (GPU_COUNT=N_GPUS=0 when it has none or no accelerator is
	// loaded).
	env["GPU_COUNT"] = "0"
	env["N_GPUS"] = "0"
	if len(a.accels) > 0 {
		first := a.accels[0]
		for k, v := range device.GPUEnv(string(first.Key()), first.AttachedDevices(alloc)) {
			env[k] = v
		}
	}
	// The accelerators' own environment (upstream appends the Env of
	// generate_docker_args to environ.txt).
	for _, acc := range a.accels {
		if !device.HasAllocation(acc, alloc) {
			continue
		}
		for _, line := range acc.Reserve(alloc).EnvList {
			if k, v, ok := strings.Cut(line, "="); ok {
				env[k] = v
			}
		}
	}
	if _, ok := env["BACKENDAI_KERNEL_ID"]; !ok {
		env["BACKENDAI_KERNEL_ID"] = cfg.KernelID
	}
	// The runner's entrypoint gives the work user passwordless sudo on
	// "1"; "0" is set too, so that an image's own ENV cannot ask for it.
	env["SUDO_SESSION_ENABLED"] = "0"
	if sudo, _ := cfg.InternalData["sudo_session_enabled"].(bool); sudo {
		env["SUDO_SESSION_ENABLED"] = "1"
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

func (a *Agent) writeKernelFiles(k *Kernel, s *KernelSpec, cluster *ClusterInfo) error {
	cfgDir := s.Scratch.Config
	if err := writeRunnerAuth(cfgDir); err != nil {
		return err
	}
	if err := writeScratchFile(cfgDir, "environ.txt", environText(s.Environ), 0o644, safefs.NoOwner); err != nil {
		return err
	}
	if err := writeScratchFile(cfgDir, "environ_base.txt", environText(s.Environ), 0o644, safefs.NoOwner); err != nil {
		return err
	}
	rt := s.Resources.Marshal(a.slotTypes)
	if err := writeScratchFile(cfgDir, "resource.txt", rt, 0o644, safefs.NoOwner); err != nil {
		return err
	}
	if err := writeScratchFile(cfgDir, "resource_base.txt", rt, 0o644, safefs.NoOwner); err != nil {
		return err
	}
	if err := writeJSON(cfgDir, "recovery.json", a.recoveryData(k, s, cluster)); err != nil {
		return err
	}
	if err := writeJSON(cfgDir, kconfigFile, kconfig{Config: s.Config, Cluster: *cluster, ImageRef: s.ImageRef, ImageName: s.ImageName, HostPorts: s.HostPorts, RuntimeType: s.RuntimeType, RuntimePath: s.RuntimePath}); err != nil {
		return err
	}
	if s.Config.BootstrapScript != "" {
		if err := writeScratchFile(s.Scratch.Work, "bootstrap.sh", []byte(s.Config.BootstrapScript), 0o755, safefs.NoOwner); err != nil {
			return err
		}
	}
	return a.writeUserFiles(k, s)
}

// writeUserFiles writes what internal_data carries for the user, as the
// Python agent does: the session's SSH keypair (.ssh/authorized_keys,
// .ssh/id_rsa, id_container) and dotfiles. Dotfile paths must stay in
// /home/work (relative, or absolute under /home/work); upstream also
// wrote other absolute paths on the host as given, which is refused here.
func (a *Agent) writeUserFiles(k *Kernel, s *KernelSpec) error {
	owner := safefs.NoOwner
	if uid, gid, ok := s.kernelUser(); ok && os.Geteuid() == 0 {
		owner = safefs.Owner{UID: uid, GID: gid}
	}
	_, err := safefs.Do(context.Background(), "write the user's files", func(ctx context.Context) (struct{}, error) {
		root, err := safefs.OpenRoot(s.Scratch.Work)
		if err != nil {
			return struct{}{}, err
		}
		defer root.Close()
		return struct{}{}, a.writeUserFilesIn(root, k, s, owner)
	})
	return err
}

func (a *Agent) writeUserFilesIn(root *safefs.Root, k *Kernel, s *KernelSpec, owner safefs.Owner) error {
	if kp, ok := s.Config.InternalData["ssh_keypair"].(map[string]any); ok && !a.mountsTarget(k, s, "/home/work/.ssh") {
		pub, _ := kp["public_key"].(string)
		priv, _ := kp["private_key"].(string)
		if pub != "" && priv != "" {
			if err := root.MkdirAll(".ssh", 0o700, owner); err != nil {
				return err
			}
			for _, f := range []struct{ name, body string }{{".ssh/authorized_keys", pub}, {".ssh/id_rsa", priv}, {"id_container", priv}} {
				if f.name == ".ssh/id_rsa" {
					if _, err := root.Lstat(f.name); err == nil {
						continue // the user's own key wins
					}
				}
				if err := root.WriteFile(f.name, []byte(f.body), safefs.WriteOptions{Perm: 0o600, Owner: owner, Sync: true}); err != nil {
					return err
				}
			}
		}
	}
	dots, err := userDotfiles(s.Config.InternalData)
	if err != nil {
		return err
	}
	for _, d := range dots {
		if d.rel == "" {
			a.log.Warn("dotfile outside /home/work not written", "kernel_id", k.ID, "path", d.path)
			continue
		}
		if err := root.WriteFile(d.rel, []byte(d.data), safefs.WriteOptions{Perm: d.perm, Owner: owner, Mkdir: true, DirPerm: 0o755, Sync: true}); err != nil {
			return err
		}
	}
	return nil
}

func (a *Agent) mountsTarget(k *Kernel, s *KernelSpec, target string) bool {
	for _, m := range s.Config.Mounts {
		if filepath.Clean(m.KernelPath) == target {
			return true
		}
	}
	return false
}

func (a *Agent) recoveryData(k *Kernel, s *KernelSpec, cluster *ClusterInfo) *RecoveryData {
	driver := "bridge"
	if cluster.NetworkMode != "" {
		driver = cluster.NetworkMode
	}
	st := s.Config.SessionType
	if st == "" {
		st = "interactive"
	}
	return &RecoveryData{
		KernelType: "docker",
		ID:         k.ID,
		AgentID:    a.id,
		ImageRef:   s.ImageRef,
		Version:    s.Kernelspec,
		OwnershipData: OwnershipData{
			KernelID: k.ID, SessionID: k.SessionID, AgentID: a.id,
			OwnerUserID: strPtr(s.Config.OwnerUserID), OwnerProjectID: strPtr(s.Config.OwnerProjectID),
		},
		NetworkID:           s.Config.NetworkID,
		NetworkDriver:       driver,
		SessionType:         st,
		BlockServicePorts:   s.Config.BlockServicePorts,
		DomainSocketProxies: []any{},
		ServicePorts:        s.Services,
		ReplInPort:          s.ReplIn,
		ReplOutPort:         s.ReplOut,
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

func (a *Agent) containerSpec(ctx context.Context, k *Kernel, s *KernelSpec, cluster *ClusterInfo, mounts []resource.Mount) (*backend.ContainerSpec, error) {
	cfg := &s.Config
	// Plugins' container arguments merge as upstream's
	// update_nested_dict (lists extend, scalars overwrite); an accelerator
	// takes part only when the kernel holds some of it, so a CPU-only
	// kernel on a GPU node gets no GPU runtime.
	var res device.Reservation
	for _, p := range a.plugins {
		if _, isAcc := p.(device.Accelerator); isAcc && !device.HasAllocation(p, s.Allocation) {
			continue
		}
		res.Merge(p.Reserve(s.Allocation))
	}
	cpuset, memory := res.CpusetCpus, res.Memory
	// The sandbox runtime: the node's, or a stricter one the image asks
	// for (the image's labels as the manager sent them). A kernel that
	// has one (a restart) keeps it: an operator lowering the node's
	// sandbox-type must not move running sessions to a weaker runtime.
	ociRuntime := s.OCIRuntime
	var err error
	if ociRuntime == "" {
		ociRuntime, err = a.sandbox.Resolve(cfg.Image.Labels)
		if err == nil {
			ociRuntime, err = sandbox.Merge(ociRuntime, res.Runtime)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCreationFailed, err)
	}
	env := make([]string, 0, len(s.Environ))
	for _, line := range strings.Split(strings.TrimSpace(string(environText(s.Environ))), "\n") {
		if line != "" {
			env = append(env, line)
		}
	}
	block := "0"
	if cfg.BlockServicePorts {
		block = "1"
	}
	var spLabel []string
	for _, sp := range s.Services {
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
		{Type: "bind", Source: abs(s.Scratch.Config), Target: "/home/config", ReadOnly: true},
		{Type: "bind", Source: abs(s.Scratch.Work), Target: "/home/work"},
	}
	if s.Scratch.Tmp != "" {
		ms = append(ms, backend.Mount{Type: "bind", Source: abs(s.Scratch.Tmp), Target: "/tmp"})
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
		backend.PortBinding{ContainerPort: replInContainerPort, Protocol: "tcp", HostIP: "127.0.0.1", HostPort: s.ReplIn},
		backend.PortBinding{ContainerPort: replOutContainerPort, Protocol: "tcp", HostIP: "127.0.0.1", HostPort: s.ReplOut},
	)
	for _, sp := range s.Services {
		hostIP := a.bindHost
		if sp.Name == "ttyd" && a.cfg.Agent.ScalingGroupType == "storage" {
			hostIP = "127.0.0.1"
		}
		for i, cp := range sp.ContainerPorts {
			pb = append(pb, backend.PortBinding{ContainerPort: cp, Protocol: "tcp", HostIP: hostIP, HostPort: sp.HostPorts[i]})
		}
	}
	hostname := kernelHostname(cfg)
	// Kernels are locked down: Docker's default seccomp profile and
	// capabilities plus only the two upstream adds (IPC_LOCK for
	// hugepages/RDMA, SYS_NICE for GPUDirect Storage), never privileged,
	// and no privilege gain through setuid binaries unless the session
	// enables sudo.
	var secOpt []string
	if sudo, _ := cfg.InternalData["sudo_session_enabled"].(bool); !sudo {
		secOpt = append(secOpt, "no-new-privileges:true")
	}
	spec := &backend.ContainerSpec{
		Name:        fmt.Sprintf("kernel.%s.%s", s.ImageRef.ShortName(), k.ID),
		Image:       s.ImageName,
		Labels:      labels,
		Env:         env,
		WorkingDir:  "/home/work",
		Hostname:    hostname,
		Tty:         kernelTTY,
		OpenStdin:   true,
		StopSignal:  "SIGINT",
		Init:        true,
		CapAdd:      []string{"IPC_LOCK", "SYS_NICE"},
		SecurityOpt: secOpt,
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
		LogDriver: a.cfg.ContainerLogs.Driver,
		LogOpts:   map[string]string{"max-size": strconv.FormatInt(int64(a.cfg.ContainerLogs.MaxLength)/5, 10), "max-file": "5", "compress": "false"},
		Runtime:   ociRuntime,
		GroupAdd:  res.GroupAdd,
	}
	spec.SecurityOpt = append(spec.SecurityOpt, res.SecurityOpt...)
	for _, r := range res.DeviceRequests {
		spec.DeviceRequests = append(spec.DeviceRequests, backend.DeviceRequest(r))
	}
	for _, d := range res.Devices {
		spec.Devices = append(spec.Devices, backend.DeviceMapping(d))
	}
	quota := a.cfg.Container.CPUQuota
	if cfg.CPUQuota != nil {
		quota = *cfg.CPUQuota
	}
	if quota {
		cpus := s.Allocation.Total("cpu")
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
		if dev := scratch.BlockDevice(s.Scratch.Work); dev != "" {
			if rbps > 0 {
				spec.ReadBps = []backend.Throttle{{Path: dev, Rate: uint64(rbps)}}
			}
			if wbps > 0 {
				spec.WriteBps = []backend.Throttle{{Path: dev, Rate: uint64(wbps)}}
			}
		} else {
			a.log.Warn("scratch is not on a block device; I/O throttling not applied", "kernel_id", k.ID, "scratch", s.Scratch.Work)
		}
	}
	a.applyNetwork(ctx, spec, cfg, cluster)
	if a.krunner != "" {
		// The runner is every kernel's entrypoint, read-only from the host;
		// the image's own command is not run (as upstream's entrypoint.sh).
		spec.Mounts = append(spec.Mounts, backend.Mount{Type: "bind", Source: a.krunner, Target: KrunnerPath, ReadOnly: true})
		spec.Entrypoint = []string{KrunnerPath, "entrypoint"}
		// The entrypoint sets up the kernel user and reads the runner's
		// root-only secret, then becomes that user: it starts as root
		// whatever the image's USER says (upstream's entrypoint.sh needs
		// root the same way).
		spec.User = "0:0"
		rt := s.RuntimeType
		if rt == "" {
			rt = "app"
		}
		spec.Cmd = []string{rt}
		if s.RuntimePath != "" {
			spec.Cmd = append(spec.Cmd, s.RuntimePath)
		}
	} else if s.Config.StartupCommand != "" && s.Config.SessionType == "batch" {
		// Without the runner (kernel-runner = false), a batch kernel runs
		// its startup command as the container command.
		spec.Cmd = []string{"/bin/sh", "-c", s.Config.StartupCommand}
	}
	return spec, nil
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
