package rpc

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/agent"
	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/bgtask"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/wire"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// HealthCheck is one connectivity check of health/health_v2, named as
// upstream's HealthProbe names them (service group and component id).
type HealthCheck struct {
	Group, Component string
	Probe            func(ctx context.Context) error
}

// Kernels is the kernel lifecycle the manager drives.
type Kernels interface {
	CreateKernels(ctx context.Context, req *agent.CreateRequest) ([]*agent.KernelInfo, error)
	DestroyKernel(ctx context.Context, kernelID, sessionID, reason string, suppressEvents bool) error
	RestartKernel(ctx context.Context, sessionID, kernelID string, updated map[string]string) (*agent.RestartInfo, error)
	SyncKernelRegistry(ctx context.Context, pairs [][2]string) error
	ResetAgent(ctx context.Context) error
	IsCreating(id string) bool
	IsRunning(id string) bool
	Kernels() []*agent.Kernel
	Logs(ctx context.Context, kernelID string) (string, error)
}

// Images is image handling: pulls, commits, pushes, purges.
type Images interface {
	CheckAndPull(ctx context.Context, configs map[string]agent.ImageConfig) (map[string]string, error)
	IsPulling(name string) bool
	Commit(ctx context.Context, kernelID, subdir, canonical, filename string, extraLabels map[string]string) (map[string]any, error)
	CommitStatus(kernelID, subdir string) (map[string]any, error)
	PushImage(ctx context.Context, canonical string, isLocal bool, reg agent.RegistryInfo) (string, error)
	PurgeImages(ctx context.Context, names []string, force, noPrune bool) ([]map[string]any, error)
	ListImages(ctx context.Context) ([]backend.Image, error)
	Task(id string) (bgtask.Task, bool)
}

// Files is the host-side access to a kernel's /home/work.
type Files interface {
	UploadFile(ctx context.Context, kernelID, filename string, data []byte) error
	DownloadFile(ctx context.Context, kernelID, p string) ([]byte, error)
	DownloadSingle(ctx context.Context, kernelID, p string) ([]byte, error)
	ListFiles(ctx context.Context, kernelID, p string) (*agent.Listing, error)
}

// Node is the node's own resources: networks, ports, devices, config.
type Node interface {
	ID() string
	Config() *config.Config
	Log() *slog.Logger
	Allocator() *resource.Allocator
	SlotTypes() map[resource.SlotName]resource.SlotType
	Plugins() []device.Plugin
	CreateLocalNetwork(ctx context.Context, name string) error
	DestroyLocalNetwork(ctx context.Context, name string) error
	AssignPort() (int, error)
	ReleasePort(p int)
	ScanGPUAllocMap() map[string]string
}

// Core is everything the RPC methods call; *agent.Agent implements it,
// and tests may give another.
type Core interface {
	Kernels
	Images
	Files
	Node
}

var (
	_ Core    = (*agent.Agent)(nil)
	_ Runners = (*agent.Agent)(nil)
)

// AgentMethods registers the agent's RPC methods on s. checks are the
// health probes (Docker alone when none are given).
func AgentMethods(s *Server, a Core, be backend.Backend, checks ...HealthCheck) {
	if len(checks) == 0 {
		checks = []HealthCheck{{Group: "container", Component: "docker", Probe: func(ctx context.Context) error { _, err := be.Ping(ctx); return err }}}
	}
	m := &methods{a: a, be: be, checks: checks}
	s.RegisterInline("ping", m.ping)
	s.Register("create_kernels", m.createKernels)
	s.Register("destroy_kernel", m.destroyKernel)
	s.Register("restart_kernel", m.restartKernel)
	s.Register("get_local_config", m.getLocalConfig)
	s.Register("health", m.health)
	s.Register("health_v2", m.health)
	s.Register("gather_hwinfo", m.gatherHWInfo)
	s.Register("gather_hwinfo_v2", m.gatherHWInfoV2)
	s.Register("sync_kernel_registry", m.syncKernelRegistry)
	s.RegisterInline("check_creating", m.checkCreating)
	s.RegisterInline("check_running", m.checkRunning)
	s.Register("check_and_pull", m.checkAndPull)
	s.RegisterInline("check_pulling", m.checkPulling)
	s.Register("get_logs", m.getLogs)
	s.Register("upload_file", m.uploadFile)
	s.Register("download_file", m.downloadFile)
	s.Register("download_single", m.downloadSingle)
	s.Register("list_files", m.listFiles)
	s.Register("commit", m.commit)
	s.Register("get_commit_status", m.getCommitStatus)
	s.Register("push_image", m.pushImage)
	s.Register("purge_images", m.purgeImages)
	s.Register("create_local_network", m.createLocalNetwork)
	s.Register("destroy_local_network", m.destroyLocalNetwork)
	s.Register("assign_port", m.assignPort)
	s.Register("release_port", m.releasePort)
	s.Register("scan_gpu_alloc_map", m.scanGPUAllocMap)
	s.Register("reset_agent", m.resetAgent)
	s.Register("shutdown_agent", m.shutdownAgent)
	// bai-agent's own additions for `bai-agent ctl` (a manager never
	// calls them).
	s.Register("bai_status", m.baiStatus)
	s.Register("bai_images", m.baiImages)
	s.RegisterInline("bai_task", m.baiTask)
	if _, ok := a.(Runners); ok {
		s.Register("execute", m.execute)
		s.Register("interrupt_kernel", m.interruptKernel)
		s.Register("get_completions", m.getCompletions)
		s.Register("ping_kernel", m.pingKernel)
		s.Register("trigger_batch_execution", m.triggerBatch)
	} else {
		for _, name := range []string{"execute", "interrupt_kernel", "get_completions", "trigger_batch_execution", "ping_kernel"} {
			s.Register(name, runnerMissing(name))
		}
	}
	if _, ok := a.(Runners); ok {
		s.Register("start_service", m.startService)
	} else {
		s.Register("start_service", runnerMissing("start_service"))
	}
	s.Register("shutdown_service", m.shutdownService)
}

// runnerMissing answers methods that need the in-container kernel runner,
// which bai-agent does not ship yet.
func runnerMissing(name string) Handler {
	return func(context.Context, *Call) (any, error) {
		return nil, &PyError{Name: "KernelRunnerNotInitializedError", Msg: name + " needs the in-container kernel runner, which this bai-agent version does not provide yet"}
	}
}

type methods struct {
	a      Core
	be     backend.Backend
	checks []HealthCheck
}

func (m *methods) ping(_ context.Context, c *Call) (any, error) {
	v, err := c.Required(0, "msg")
	if err != nil {
		return nil, err
	}
	s, err := asStr(v, "msg")
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (m *methods) createKernels(ctx context.Context, c *Call) (any, error) {
	req, err := bindCreateRequest(c)
	if err != nil {
		return nil, err
	}
	infos, err := m.a.CreateKernels(ctx, req)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(infos))
	for i, in := range infos {
		out[i] = kernelInfoWire(in, m.a.Config().Agent.LegacyWire())
	}
	return out, nil
}

func (m *methods) destroyKernel(ctx context.Context, c *Call) (any, error) {
	kid, err := m.strArg(c, 0, "kernel_id")
	if err != nil {
		return nil, err
	}
	sid := ""
	if v, ok := c.Arg(1, "session_id"); ok {
		if sid, err = asOptStr(v, "session_id"); err != nil {
			return nil, err
		}
	}
	reason := ""
	if v, ok := c.Arg(2, "reason"); ok {
		if reason, err = asOptStr(v, "reason"); err != nil {
			return nil, err
		}
	}
	suppress := false
	if v, ok := c.Arg(3, "suppress_events"); ok && v != nil {
		if suppress, err = asBool(v, "suppress_events"); err != nil {
			return nil, err
		}
	}
	return nil, m.a.DestroyKernel(ctx, kid, sid, reason, suppress)
}

func (m *methods) restartKernel(ctx context.Context, c *Call) (any, error) {
	sid, err := m.strArg(c, 0, "session_id")
	if err != nil {
		return nil, err
	}
	kid, err := m.strArg(c, 1, "kernel_id")
	if err != nil {
		return nil, err
	}
	updated := map[string]string{}
	if v, ok := c.Arg(3, "updated_config"); ok && v != nil {
		uc, err := asMap(v, "updated_config")
		if err != nil {
			return nil, err
		}
		if env, ok := uc.Get("environ"); ok && env != nil {
			if updated, err = asStrMap(env, "updated_config.environ"); err != nil {
				return nil, err
			}
		}
	}
	ri, err := m.a.RestartKernel(ctx, sid, kid, updated)
	if err != nil {
		return nil, err
	}
	return restartInfoWire(ri), nil
}

func (m *methods) getLocalConfig(_ context.Context, c *Call) (any, error) {
	// The manager passes agent_id positionally here.
	if v, ok := c.Arg(0, "agent_id"); ok && v != nil {
		id, err := asStr(v, "agent_id")
		if err != nil {
			return nil, err
		}
		if id != m.a.ID() {
			return nil, &PyError{Name: "AgentIdNotFoundError", Msg: fmt.Sprintf("agent %s is not served here", id)}
		}
	}
	return map[string]any{
		"agent":   map[string]any{"abuse-report-path": m.a.Config().Agent.AbuseReportPath},
		"watcher": map[string]any{},
	}, nil
}

// health answers health and health_v2 (HealthResponse): every check
// runs concurrently under its own 5-s deadline, so one stuck dependency
// cannot hold the reply.
func (m *methods) health(ctx context.Context, _ *Call) (any, error) {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	results := make([]any, len(m.checks))
	healthy := make([]bool, len(m.checks))
	var wg sync.WaitGroup
	for i, hc := range m.checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			check := map[string]any{"service_group": hc.Group, "component_id": hc.Component, "is_healthy": true, "last_checked_at": now, "error_message": nil}
			healthy[i] = true
			if err := hc.Probe(pctx); err != nil {
				check["is_healthy"], check["error_message"] = false, err.Error()
				healthy[i] = false
			}
			results[i] = check
		}()
	}
	wg.Wait()
	all := true
	for _, h := range healthy {
		all = all && h
	}
	status := "ok"
	if !all {
		status = "degraded"
	}
	return map[string]any{
		"status": status, "version": agent.Version, "component": "agent",
		"connectivity": map[string]any{"overall_healthy": all, "connectivity_checks": results, "timestamp": now},
	}, nil
}

func (m *methods) hwinfo() map[string]any {
	out := map[string]any{}
	for _, p := range m.a.Plugins() {
		status, info, meta := "healthy", (*string)(nil), p.HWInfo()
		if acc, ok := p.(device.Accelerator); ok {
			h, ok := acc.NodeHWInfo()
			if !ok {
				continue // upstream leaves out plugins without hwinfo
			}
			status, info, meta = h.Status, h.StatusInfo, h.Metadata
		}
		md := map[string]any{}
		for k, v := range meta {
			md[k] = v
		}
		var si any
		if info != nil {
			si = *info
		}
		out[string(p.Key())] = map[string]any{"status": status, "status_info": si, "metadata": md}
	}
	return out
}

func (m *methods) gatherHWInfo(_ context.Context, _ *Call) (any, error) { return m.hwinfo(), nil }

func (m *methods) gatherHWInfoV2(_ context.Context, _ *Call) (any, error) {
	var devs []any
	for name, v := range m.hwinfo() {
		d := v.(map[string]any)
		devs = append(devs, map[string]any{"device_name": name, "status": d["status"], "status_info": d["status_info"], "metadata": d["metadata"]})
	}
	return map[string]any{"devices": devs}, nil
}

func (m *methods) syncKernelRegistry(ctx context.Context, c *Call) (any, error) {
	v, err := c.Required(0, "raw_kernel_session_ids")
	if err != nil {
		return nil, err
	}
	l, err := asList(v, "raw_kernel_session_ids")
	if err != nil {
		return nil, err
	}
	var pairs [][2]string
	for i, it := range l {
		p, err := asList(it, fmt.Sprintf("raw_kernel_session_ids[%d]", i))
		if err != nil {
			return nil, err
		}
		if len(p) != 2 {
			return nil, typeError("raw_kernel_session_ids[%d]: expected (kernel_id, session_id)", i)
		}
		k, err := asStr(p[0], fmt.Sprintf("raw_kernel_session_ids[%d][0]", i))
		if err != nil {
			return nil, err
		}
		s, err := asStr(p[1], fmt.Sprintf("raw_kernel_session_ids[%d][1]", i))
		if err != nil {
			return nil, err
		}
		pairs = append(pairs, [2]string{k, s})
	}
	return nil, m.a.SyncKernelRegistry(ctx, pairs)
}

func (m *methods) checkCreating(_ context.Context, c *Call) (any, error) {
	kid, err := m.strArg(c, 0, "kernel_id")
	if err != nil {
		return nil, err
	}
	return m.a.IsCreating(kid), nil
}

func (m *methods) checkRunning(_ context.Context, c *Call) (any, error) {
	kid, err := m.strArg(c, 0, "kernel_id")
	if err != nil {
		return nil, err
	}
	return m.a.IsRunning(kid), nil
}

// strPair reads two leading string arguments (kernel_id plus a path or
// name, in most methods).
func (m *methods) strPair(c *Call, first, second string) (string, string, error) {
	a, err := m.strArg(c, 0, first)
	if err != nil {
		return "", "", err
	}
	b, err := m.strArg(c, 1, second)
	return a, b, err
}

func (m *methods) strArg(c *Call, i int, name string) (string, error) {
	v, err := c.Required(i, name)
	if err != nil {
		return "", err
	}
	return asStr(v, name)
}

func (m *methods) checkAndPull(ctx context.Context, c *Call) (any, error) {
	v, err := c.Required(0, "image_configs")
	if err != nil {
		return nil, err
	}
	im, err := asMap(v, "image_configs")
	if err != nil {
		return nil, err
	}
	configs := map[string]agent.ImageConfig{}
	for _, kv := range im {
		name, err := asStr(kv.Key, "image_configs key")
		if err != nil {
			return nil, err
		}
		ic, err := bindImageConfig(kv.Val, "image_configs["+PyRepr(name)+"]")
		if err != nil {
			return nil, err
		}
		configs[name] = ic
	}
	ids, err := m.a.CheckAndPull(ctx, configs)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	for k, v := range ids {
		out[k] = v
	}
	return out, nil
}

func (m *methods) checkPulling(_ context.Context, c *Call) (any, error) {
	name, err := m.strArg(c, 0, "image_name")
	if err != nil {
		return nil, err
	}
	return m.a.IsPulling(name), nil
}

func (m *methods) getLogs(ctx context.Context, c *Call) (any, error) {
	kid, err := m.strArg(c, 0, "kernel_id")
	if err != nil {
		return nil, err
	}
	logs, err := m.a.Logs(ctx, kid)
	if err != nil {
		return nil, err
	}
	return map[string]any{"logs": logs}, nil
}

func (m *methods) uploadFile(ctx context.Context, c *Call) (any, error) {
	kid, err := m.strArg(c, 0, "kernel_id")
	if err != nil {
		return nil, err
	}
	name, err := m.strArg(c, 1, "filename")
	if err != nil {
		return nil, err
	}
	v, err := c.Required(2, "filedata")
	if err != nil {
		return nil, err
	}
	var data []byte
	switch x := v.(type) {
	case []byte:
		data = x
	case string:
		data = []byte(x)
	default:
		return nil, wrongType("filedata", "bytes", v)
	}
	return nil, m.a.UploadFile(ctx, kid, name, data)
}

func (m *methods) downloadFile(ctx context.Context, c *Call) (any, error) {
	kid, p, err := m.strPair(c, "kernel_id", "filepath")
	if err != nil {
		return nil, err
	}
	return m.a.DownloadFile(ctx, kid, p)
}

func (m *methods) downloadSingle(ctx context.Context, c *Call) (any, error) {
	kid, p, err := m.strPair(c, "kernel_id", "filepath")
	if err != nil {
		return nil, err
	}
	return m.a.DownloadSingle(ctx, kid, p)
}

func (m *methods) listFiles(ctx context.Context, c *Call) (any, error) {
	kid, p, err := m.strPair(c, "kernel_id", "path")
	if err != nil {
		return nil, err
	}
	l, err := m.a.ListFiles(ctx, kid, p)
	if err != nil {
		return nil, err
	}
	return listingWire(l), nil
}

func (m *methods) commit(ctx context.Context, c *Call) (any, error) {
	kid, subdir, err := m.strPair(c, "kernel_id", "subdir")
	if err != nil {
		return nil, err
	}
	var canonical, filename string
	if v, ok := c.Kwargs.Get("canonical"); ok {
		if canonical, err = asOptStr(v, "canonical"); err != nil {
			return nil, err
		}
	}
	if v, ok := c.Kwargs.Get("filename"); ok {
		if filename, err = asOptStr(v, "filename"); err != nil {
			return nil, err
		}
	}
	labels := map[string]string{}
	if v, ok := c.Kwargs.Get("extra_labels"); ok && v != nil {
		if labels, err = asStrMap(v, "extra_labels"); err != nil {
			return nil, err
		}
	}
	return m.a.Commit(ctx, kid, subdir, canonical, filename, labels)
}

func (m *methods) getCommitStatus(_ context.Context, c *Call) (any, error) {
	kid, subdir, err := m.strPair(c, "kernel_id", "subdir")
	if err != nil {
		return nil, err
	}
	return m.a.CommitStatus(kid, subdir)
}

func (m *methods) pushImage(ctx context.Context, c *Call) (any, error) {
	v, err := c.Required(0, "image_ref")
	if err != nil {
		return nil, err
	}
	var canonical string
	var isLocal bool
	switch x := v.(type) {
	case wire.ImageRef:
		canonical, isLocal = x.Canonical(), x.IsLocal
	default:
		if canonical, err = asStr(v, "image_ref"); err != nil {
			return nil, wrongType("image_ref", "ImageRef", v)
		}
	}
	var reg agent.RegistryInfo
	if rv, ok := c.Arg(1, "registry_conf"); ok && rv != nil {
		rm, err := asMap(rv, "registry_conf")
		if err != nil {
			return nil, err
		}
		f := &fields{m: rm, path: "registry_conf"}
		f.str("name", &reg.Name)
		f.str("url", &reg.URL)
		f.str("username", &reg.Username)
		f.str("password", &reg.Password)
		if f.err != nil {
			return nil, f.err
		}
	}
	id, err := m.a.PushImage(ctx, canonical, isLocal, reg)
	if err != nil {
		return nil, err
	}
	return map[string]any{"bgtask_id": id, "canonical": canonical}, nil
}

func (m *methods) purgeImages(ctx context.Context, c *Call) (any, error) {
	var imagesV, forceV, noPruneV any
	imagesV, _ = c.Arg(0, "images")
	forceV, _ = c.Arg(1, "force")
	noPruneV, _ = c.Arg(2, "noprune")
	// The v2 form passes one request dict.
	if req, ok := imagesV.(msgpack.Map); ok {
		imagesV, _ = req.Get("images")
		forceV, _ = req.Get("force")
		noPruneV, _ = req.Get("noprune")
	}
	if imagesV == nil {
		return nil, typeError("purge_images() missing required argument: 'images'")
	}
	l, err := asList(imagesV, "images")
	if err != nil {
		return nil, err
	}
	var names []string
	for i, it := range l {
		s, err := asStr(it, fmt.Sprintf("images[%d]", i))
		if err != nil {
			return nil, err
		}
		names = append(names, s)
	}
	force, noPrune := false, false
	if forceV != nil {
		if force, err = asBool(forceV, "force"); err != nil {
			return nil, err
		}
	}
	if noPruneV != nil {
		if noPrune, err = asBool(noPruneV, "noprune"); err != nil {
			return nil, err
		}
	}
	res, err := m.a.PurgeImages(ctx, names, force, noPrune)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(res))
	for i, r := range res {
		out[i] = r
	}
	return map[string]any{"responses": out}, nil
}

func (m *methods) createLocalNetwork(ctx context.Context, c *Call) (any, error) {
	name, err := m.strArg(c, 0, "network_name")
	if err != nil {
		return nil, err
	}
	return nil, m.a.CreateLocalNetwork(ctx, name)
}

func (m *methods) destroyLocalNetwork(ctx context.Context, c *Call) (any, error) {
	name, err := m.strArg(c, 0, "network_name")
	if err != nil {
		return nil, err
	}
	return nil, m.a.DestroyLocalNetwork(ctx, name)
}

func (m *methods) assignPort(context.Context, *Call) (any, error) { return m.a.AssignPort() }

func (m *methods) releasePort(_ context.Context, c *Call) (any, error) {
	v, err := c.Required(0, "port_no")
	if err != nil {
		return nil, err
	}
	p, err := asInt(v, "port_no")
	if err != nil {
		return nil, err
	}
	m.a.ReleasePort(p)
	return nil, nil
}

func (m *methods) scanGPUAllocMap(context.Context, *Call) (any, error) {
	out := map[string]any{}
	for k, v := range m.a.ScanGPUAllocMap() {
		out[k] = v
	}
	return out, nil
}

func (m *methods) resetAgent(ctx context.Context, _ *Call) (any, error) {
	return nil, m.a.ResetAgent(ctx)
}

// shutdownAgent is a no-op, as in the Python agent.
// shutdownService never fails, as the Python agent's (which logs and
// returns None): the manager calls it to stop an app and does not expect
// an error. Without the kernel runner no service runs, so there is
// nothing to stop.
func (m *methods) shutdownService(_ context.Context, c *Call) (any, error) {
	kid, _ := c.Arg(0, "kernel_id")
	svc, _ := c.Arg(1, "service")
	k, _ := asOptStr(kid, "kernel_id")
	name, _ := asOptStr(svc, "service")
	if r, ok := m.a.(Runners); ok && k != "" && name != "" {
		r.ShutdownService(k, name)
	}
	// Never raises, as upstream (errors are only logged).
	return nil, nil
}

func (m *methods) shutdownAgent(context.Context, *Call) (any, error) { return nil, nil }

func (m *methods) baiStatus(context.Context, *Call) (any, error) {
	avail, used := m.a.Allocator().Available(), m.a.Allocator().Used()
	slots := map[string]any{}
	for s, v := range avail {
		slots[string(s)] = map[string]any{"available": resource.FormatAmount(v), "used": resource.FormatAmount(used[s]), "type": string(m.a.SlotTypes()[s])}
	}
	kernelHost := ""
	if kh, ok := m.a.(interface{ KernelHost() string }); ok {
		kernelHost = kh.KernelHost()
	}
	var kernels []any
	for _, kk := range m.a.Kernels() {
		k := kk.View()
		sp := make([]any, 0, len(k.Services))
		for _, s := range k.Services {
			sp = append(sp, map[string]any{"name": s.Name, "protocol": s.Protocol, "container_ports": intsAny(s.ContainerPorts), "host_ports": intsAny(s.HostPorts)})
		}
		cpus := make([]any, 0)
		for _, d := range k.Allocation.Devices("cpu") {
			cpus = append(cpus, string(d))
		}
		// Accelerator units (cuda.device: ["0"], cuda.shares: ["0:0.5"]).
		accels := map[string]any{}
		for _, s := range k.Allocation.Slots() {
			if s == "cpu" || s == "mem" {
				continue
			}
			var units []any
			for _, id := range k.Allocation.Devices(s) {
				v := k.Allocation[s][id]
				if v.Equal(decimal.NewFromInt(1)) {
					units = append(units, string(id))
				} else {
					units = append(units, string(id)+":"+resource.FormatAmount(v))
				}
			}
			if len(units) > 0 {
				accels[string(s)] = units
			}
		}
		kernels = append(kernels, map[string]any{
			"accelerators": accels,
			"id":           k.ID, "session_id": k.SessionID, "state": string(k.State), "image": k.ImageName,
			"container_id": k.ContainerID, "cpu_cores": cpus, "mem": resource.FormatAmount(k.Allocation.Total("mem")),
			"repl_in_port": k.ReplIn, "repl_out_port": k.ReplOut, "service_ports": sp, "created_at": k.CreatedAt.Unix(),
			"kernel_host": kernelHost,
		})
	}
	if kernels == nil {
		kernels = []any{}
	}
	return map[string]any{"agent_id": m.a.ID(), "version": agent.Version, "slots": slots, "kernels": kernels}, nil
}

func intsAny(v []int) []any {
	out := make([]any, len(v))
	for i, x := range v {
		out[i] = x
	}
	return out
}

func (m *methods) baiImages(ctx context.Context, _ *Call) (any, error) {
	imgs, err := m.a.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]any, 0, len(imgs))
	for _, i := range imgs {
		tags := make([]any, len(i.Tags))
		for j, t := range i.Tags {
			tags[j] = t
		}
		labels := map[string]any{}
		for k, v := range i.Labels {
			labels[k] = v
		}
		out = append(out, map[string]any{"id": i.ID, "tags": tags, "labels": labels})
	}
	return out, nil
}

func (m *methods) baiTask(_ context.Context, c *Call) (any, error) {
	id, err := m.strArg(c, 0, "task_id")
	if err != nil {
		return nil, err
	}
	t, ok := m.a.Task(strings.ReplaceAll(id, "-", ""))
	if !ok {
		return nil, &PyError{Name: "KeyError", Msg: "no background task " + id}
	}
	return map[string]any{"task_id": t.ID, "name": t.Name, "status": string(t.Status), "current": t.Current, "total": t.Total, "message": t.Message}, nil
}
