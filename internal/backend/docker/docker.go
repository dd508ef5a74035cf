package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/blkiodev"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/bai-agent/bai-agent/internal/backend"
)

// Backend talks to dockerd.
type Backend struct {
	cli *client.Client
}

var _ backend.Backend = (*Backend)(nil)

// New connects with DOCKER_HOST (or the default socket) and negotiates the
// API version with the daemon on first use.
func New() (*Backend, error) {
	cli, err := client.New(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &Backend{cli: cli}, nil
}

// NewHost connects to the engine at host (a DOCKER_HOST value).
func NewHost(host string) (*Backend, error) {
	cli, err := client.New(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %w", host, err)
	}
	return &Backend{cli: cli}, nil
}

// Client exposes the underlying client for tools and tests that measure
// the raw API (benchmarks compare against it).
func (b *Backend) Client() *client.Client { return b.cli }

// Close releases the client's connections.
func (b *Backend) Close() error { return b.cli.Close() }

func mapErr(err error, what string) error {
	if err == nil {
		return nil
	}
	switch {
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("%s: %w: %v", what, backend.ErrNotFound, err)
	case cerrdefs.IsConflict(err):
		return fmt.Errorf("%s: %w: %v", what, backend.ErrConflict, err)
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("%s: %w: %v", what, backend.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Ping checks the daemon and returns the negotiated API version.
func (b *Backend) Ping(ctx context.Context) (string, error) {
	res, err := b.cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	if err != nil {
		return "", mapErr(err, "docker ping")
	}
	return res.APIVersion, nil
}

// EngineInfo implements backend.EngineInspector from /version and /info.
func (b *Backend) EngineInfo(ctx context.Context) (*backend.EngineInfo, error) {
	info, err := b.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return nil, mapErr(err, "docker info")
	}
	out := &backend.EngineInfo{Name: "Docker Engine", ServerVersion: info.Info.ServerVersion, CDISpecDirs: info.Info.CDISpecDirs}
	for name := range info.Info.Runtimes {
		out.Runtimes = append(out.Runtimes, name)
	}
	sort.Strings(out.Runtimes)
	if v, err := b.cli.ServerVersion(ctx, client.ServerVersionOptions{}); err == nil {
		for _, c := range v.Components {
			if c.Name == "Podman Engine" {
				out.Name, out.ServerVersion = c.Name, c.Version
			}
		}
	}
	return out, nil
}

// Create implements backend.Backend.
func (b *Backend) Create(ctx context.Context, s *backend.ContainerSpec) (string, error) {
	cfg := &container.Config{
		Image:        s.Image,
		Labels:       s.Labels,
		Env:          s.Env,
		Entrypoint:   s.Entrypoint,
		Cmd:          s.Cmd,
		WorkingDir:   s.WorkingDir,
		Hostname:     s.Hostname,
		User:         s.User,
		Tty:          s.Tty,
		OpenStdin:    s.OpenStdin,
		StopSignal:   s.StopSignal,
		ExposedPorts: network.PortSet{},
	}
	hc := &container.HostConfig{
		Init:         &s.Init,
		CapAdd:       s.CapAdd,
		SecurityOpt:  s.SecurityOpt,
		ShmSize:      s.ShmSize,
		PortBindings: network.PortMap{},
		LogConfig:    container.LogConfig{Type: s.LogDriver, Config: s.LogOpts},
	}
	hc.Resources.CpusetCpus = s.CpusetCpus
	hc.Resources.NanoCPUs = s.NanoCPUs
	hc.Runtime = s.Runtime
	hc.GroupAdd = s.GroupAdd
	for _, r := range s.DeviceRequests {
		hc.Resources.DeviceRequests = append(hc.Resources.DeviceRequests, container.DeviceRequest{Driver: r.Driver, Count: r.Count, DeviceIDs: r.DeviceIDs, Capabilities: r.Capabilities, Options: r.Options})
	}
	for _, d := range s.Devices {
		hc.Resources.Devices = append(hc.Resources.Devices, container.DeviceMapping{PathOnHost: d.PathOnHost, PathInContainer: d.PathInContainer, CgroupPermissions: d.CgroupPermissions})
	}
	for _, t := range s.ReadBps {
		hc.Resources.BlkioDeviceReadBps = append(hc.Resources.BlkioDeviceReadBps, &blkiodev.ThrottleDevice{Path: t.Path, Rate: t.Rate})
	}
	for _, t := range s.WriteBps {
		hc.Resources.BlkioDeviceWriteBps = append(hc.Resources.BlkioDeviceWriteBps, &blkiodev.ThrottleDevice{Path: t.Path, Rate: t.Rate})
	}
	if s.Memory > 0 {
		hc.Resources.Memory = s.Memory
		hc.Resources.MemorySwap = s.Memory
	}
	if s.PidsLimit > 0 {
		pl := s.PidsLimit
		hc.Resources.PidsLimit = &pl
	}
	for _, u := range s.Ulimits {
		hc.Resources.Ulimits = append(hc.Resources.Ulimits, &container.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	for _, m := range s.Mounts {
		mt := mount.Mount{Type: mount.Type(m.Type), Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly}
		if m.Type == "bind" {
			mt.BindOptions = &mount.BindOptions{Propagation: mount.PropagationRPrivate}
		}
		hc.Mounts = append(hc.Mounts, mt)
	}
	for _, p := range s.Ports {
		port, err := network.ParsePort(fmt.Sprintf("%d/%s", p.ContainerPort, p.Protocol))
		if err != nil {
			return "", fmt.Errorf("port %d/%s: %w", p.ContainerPort, p.Protocol, err)
		}
		cfg.ExposedPorts[port] = struct{}{}
		pb := network.PortBinding{HostPort: strconv.Itoa(p.HostPort)}
		if p.HostIP != "" {
			ip, err := netip.ParseAddr(p.HostIP)
			if err != nil {
				return "", fmt.Errorf("bind host %q: %w", p.HostIP, err)
			}
			pb.HostIP = ip
		}
		hc.PortBindings[port] = append(hc.PortBindings[port], pb)
	}
	var nc *network.NetworkingConfig
	hc.ExtraHosts = s.ExtraHosts
	switch s.Network {
	case "":
	case "host":
		// The host's namespace: published ports mean nothing there.
		hc.NetworkMode = "host"
		hc.PortBindings, cfg.ExposedPorts = nil, nil
	default:
		hc.NetworkMode = container.NetworkMode(s.Network)
		nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			s.Network: {Aliases: s.NetworkAliases, DriverOpts: s.NetworkDriverOpts},
		}}
	}
	res, err := b.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: hc, NetworkingConfig: nc, Name: s.Name})
	if err != nil {
		return "", mapErr(err, "create container "+s.Name)
	}
	return res.ID, nil
}

// Start implements backend.Backend.
func (b *Backend) Start(ctx context.Context, id string) error {
	_, err := b.cli.ContainerStart(ctx, id, client.ContainerStartOptions{})
	return mapErr(err, "start container "+id)
}

// Stop implements backend.Backend.
func (b *Backend) Stop(ctx context.Context, id string, timeout time.Duration) error {
	secs := int(timeout / time.Second)
	_, err := b.cli.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &secs})
	if err != nil && (cerrdefs.IsNotFound(err) || cerrdefs.IsNotModified(err)) {
		return nil
	}
	return mapErr(err, "stop container "+id)
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, id string) error {
	_, err := b.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil && cerrdefs.IsConflict(err) {
		// A forced removal conflicts only with another removal in
		// progress; it is done once the container is gone or dying.
		ins, ierr := b.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if cerrdefs.IsNotFound(ierr) {
			return nil
		}
		if ierr == nil && ins.Container.State != nil && (ins.Container.State.Status == "removing" || ins.Container.State.Status == "dead") {
			return nil
		}
	}
	return mapErr(err, "remove container "+id)
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() < 2 {
		return time.Time{}
	}
	return t
}

// Inspect implements backend.Backend.
func (b *Backend) Inspect(ctx context.Context, id string) (*backend.Container, error) {
	res, err := b.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return nil, mapErr(err, "inspect container "+id)
	}
	r := res.Container
	c := &backend.Container{ID: r.ID, Name: strings.TrimPrefix(r.Name, "/"), Image: r.Image}
	if r.Config != nil {
		c.Labels = r.Config.Labels
		c.Tty = r.Config.Tty
	}
	if r.State != nil {
		c.Status = string(r.State.Status)
		c.Running = r.State.Running
		c.ExitCode = r.State.ExitCode
		c.OOMKilled = r.State.OOMKilled
		c.Pid = r.State.Pid
		c.StartedAt = parseTime(r.State.StartedAt)
		c.FinishedAt = parseTime(r.State.FinishedAt)
	}
	if r.HostConfig != nil {
		c.CpusetCpus = r.HostConfig.CpusetCpus
		c.NanoCPUs = r.HostConfig.NanoCPUs
		for _, t := range r.HostConfig.BlkioDeviceWriteBps {
			c.WriteBps = append(c.WriteBps, backend.Throttle{Path: t.Path, Rate: t.Rate})
		}
		c.Memory = r.HostConfig.Memory
		c.ShmSize = r.HostConfig.ShmSize
		c.Runtime = r.HostConfig.Runtime
		if r.HostConfig.PidsLimit != nil {
			c.PidsLimit = *r.HostConfig.PidsLimit
		}
		for port, binds := range r.HostConfig.PortBindings {
			for _, pb := range binds {
				hp, _ := strconv.Atoi(pb.HostPort)
				ip := ""
				if pb.HostIP.IsValid() {
					ip = pb.HostIP.String()
				}
				c.Ports = append(c.Ports, backend.PortBinding{ContainerPort: int(port.Num()), Protocol: string(port.Proto()), HostIP: ip, HostPort: hp})
			}
		}
	}
	for _, m := range r.Mounts {
		c.Mounts = append(c.Mounts, backend.Mount{Type: string(m.Type), Source: m.Source, Target: m.Destination, ReadOnly: !m.RW})
	}
	return c, nil
}

// List implements backend.Backend.
func (b *Backend) List(ctx context.Context, labels map[string]string) ([]backend.Container, error) {
	f := client.Filters{}
	for k, v := range labels {
		f.Add("label", k+"="+v)
	}
	res, err := b.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, mapErr(err, "list containers")
	}
	out := make([]backend.Container, 0, len(res.Items))
	for _, s := range res.Items {
		name := ""
		if len(s.Names) > 0 {
			name = strings.TrimPrefix(s.Names[0], "/")
		}
		out = append(out, backend.Container{
			ID: s.ID, Name: name, Image: s.Image, Labels: s.Labels, Status: string(s.State), Running: s.State == "running",
		})
	}
	return out, nil
}

// Events implements backend.Backend.
func (b *Backend) Events(ctx context.Context) (<-chan backend.Event, <-chan error) {
	f := client.Filters{}
	f.Add("type", "container")
	for _, a := range []string{"start", "die", "oom", "destroy"} {
		f.Add("event", a)
	}
	res := b.cli.Events(ctx, client.EventsListOptions{Filters: f})
	out := make(chan backend.Event)
	errc := make(chan error, 1)
	go func() {
		defer close(out)
		for {
			select {
			case m, ok := <-res.Messages:
				if !ok {
					errc <- io.EOF
					return
				}
				ev := backend.Event{ContainerID: m.Actor.ID, Action: string(m.Action), Labels: m.Actor.Attributes}
				if m.TimeNano != 0 {
					ev.Time = time.Unix(0, m.TimeNano)
				}
				if ec, ok := m.Actor.Attributes["exitCode"]; ok {
					ev.ExitCode, _ = strconv.Atoi(ec)
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					errc <- ctx.Err()
					return
				}
			case err := <-res.Err:
				if err == nil {
					err = io.EOF
				}
				errc <- mapErr(err, "docker events")
				return
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			}
		}
	}()
	return out, errc
}

// InspectImage implements backend.Backend.
func (b *Backend) InspectImage(ctx context.Context, ref string) (*backend.Image, error) {
	res, err := b.cli.ImageInspect(ctx, ref)
	if err != nil {
		return nil, mapErr(err, "inspect image "+ref)
	}
	img := &backend.Image{ID: res.ID, Tags: res.RepoTags, Architecture: res.Architecture}
	if res.Config != nil {
		img.Labels = res.Config.Labels
		img.Cmd = res.Config.Cmd
	}
	return img, nil
}

// ReadImageFile implements backend.Backend: a container is created from
// the image (never started: no process, no network), the file is copied
// out as a tar stream, and the container is removed.
func (b *Backend) ReadImageFile(ctx context.Context, ref, path string, limit int64) ([]byte, error) {
	res, err := b.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image: ref, Entrypoint: []string{"/nonexistent"}, NetworkDisabled: true,
			// Docker lays these over the image's own labels: an image
			// labelled as one of this agent's kernels (a committed one
			// is) must not make the probe look like that kernel to the
			// agent's sync loop.
			Labels: map[string]string{backend.LabelProbe: "image-file",
				"ai.backend.owner": "", "ai.backend.kernel-id": "", "ai.backend.session-id": ""},
		},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		return nil, mapErr(err, "create a container to read "+path+" of "+ref)
	}
	defer func() {
		// With its anonymous volumes: an image's VOLUME would otherwise
		// leave one behind per probe.
		_, _ = b.cli.ContainerRemove(context.WithoutCancel(ctx), res.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	}()
	cp, err := b.cli.CopyFromContainer(ctx, res.ID, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		return nil, mapErr(err, "read "+path+" of "+ref)
	}
	defer cp.Content.Close()
	tr := tar.NewReader(cp.Content)
	hdr, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("read %s of %s: %w", path, ref, err)
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("%s of %s is not a regular file: %w", path, ref, backend.ErrNotFound)
	}
	if hdr.Size > limit {
		return nil, fmt.Errorf("%s of %s is %d bytes (limit %d)", path, ref, hdr.Size, limit)
	}
	return io.ReadAll(io.LimitReader(tr, limit))
}

// Logs implements backend.Backend. With a TTY the stream is raw;
// otherwise it is demultiplexed.
func (b *Backend) Logs(ctx context.Context, id string, tty bool, limit int64) ([]byte, error) {
	rc, err := b.cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return nil, mapErr(err, "logs of container "+id)
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read logs of %s: %w", id, err)
	}
	out := raw
	if !tty {
		out = demux(raw)
	}
	if limit > 0 && int64(len(out)) > limit {
		out = out[int64(len(out))-limit:]
	}
	return out, nil
}

// demux splits Docker's multiplexed stdout/stderr stream into one
// buffer, in order (a truncated last frame is dropped).
func demux(raw []byte) []byte {
	var buf bytes.Buffer
	_, _ = stdcopy.StdCopy(&buf, &buf, bytes.NewReader(raw))
	return buf.Bytes()
}

// Exec runs cmd in a running container and returns its exit code and
// combined output (at most 16 MiB).
func (b *Backend) Exec(ctx context.Context, id string, cmd []string) (int, []byte, error) {
	cr, err := b.cli.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return -1, nil, mapErr(err, "exec in container "+id)
	}
	att, err := b.cli.ExecAttach(ctx, cr.ID, client.ExecAttachOptions{})
	if err != nil {
		return -1, nil, mapErr(err, "attach exec in container "+id)
	}
	defer att.Close()
	raw, err := io.ReadAll(io.LimitReader(att.Reader, 16<<20))
	if err != nil {
		return -1, nil, fmt.Errorf("read exec output: %w", err)
	}
	for {
		ins, err := b.cli.ExecInspect(ctx, cr.ID, client.ExecInspectOptions{})
		if err != nil {
			return -1, nil, mapErr(err, "inspect exec")
		}
		if !ins.Running {
			return ins.ExitCode, demux(raw), nil
		}
		select {
		case <-ctx.Done():
			return -1, nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Usage is a container's counters as the Docker stats API reports them
// (the stats-type = "docker" path, for hosts without readable cgroups).
type Usage struct {
	CPUUsec         uint64
	MemUsage        uint64
	MemLimit        uint64
	IORead, IOWrite uint64
	NetRx, NetTx    uint64
}

// Stats reads one sample through GET /containers/{id}/stats?stream=0.
func (b *Backend) Stats(ctx context.Context, id string) (Usage, error) {
	r, err := b.cli.ContainerStats(ctx, id, client.ContainerStatsOptions{Stream: false})
	if err != nil {
		return Usage{}, mapErr(err, "stats of container "+id)
	}
	defer r.Body.Close()
	var s struct {
		CPUStats struct {
			CPUUsage struct {
				TotalUsage uint64 `json:"total_usage"`
			} `json:"cpu_usage"`
		} `json:"cpu_stats"`
		MemoryStats struct {
			Usage uint64            `json:"usage"`
			Limit uint64            `json:"limit"`
			Stats map[string]uint64 `json:"stats"`
		} `json:"memory_stats"`
		BlkioStats struct {
			IOServiceBytesRecursive []struct {
				Op    string `json:"op"`
				Value uint64 `json:"value"`
			} `json:"io_service_bytes_recursive"`
		} `json:"blkio_stats"`
		Networks map[string]struct {
			RxBytes uint64 `json:"rx_bytes"`
			TxBytes uint64 `json:"tx_bytes"`
		} `json:"networks"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<20)).Decode(&s); err != nil {
		return Usage{}, fmt.Errorf("stats of container %s: %w", id, err)
	}
	u := Usage{CPUUsec: s.CPUStats.CPUUsage.TotalUsage / 1000, MemUsage: s.MemoryStats.Usage, MemLimit: s.MemoryStats.Limit}
	inactive := s.MemoryStats.Stats["total_inactive_file"]
	if v, ok := s.MemoryStats.Stats["inactive_file"]; ok {
		inactive = v
	}
	if inactive < u.MemUsage {
		u.MemUsage -= inactive
	}
	for _, e := range s.BlkioStats.IOServiceBytesRecursive {
		switch strings.ToLower(e.Op) {
		case "read":
			u.IORead += e.Value
		case "write":
			u.IOWrite += e.Value
		}
	}
	for _, n := range s.Networks {
		u.NetRx += n.RxBytes
		u.NetTx += n.TxBytes
	}
	return u, nil
}
