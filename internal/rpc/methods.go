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
	s.RegisterInline("ping", adapt(m.ping))
	s.Register("create_kernels", m.createKernels)
	s.Register("destroy_kernel", adapt(m.destroyKernel))
	s.Register("restart_kernel", adapt(m.restartKernel))
	s.Register("get_local_config", adapt(m.getLocalConfig))
	s.Register("health", m.health)
	s.Register("health_v2", m.health)
	s.Register("gather_hwinfo", m.gatherHWInfo)
	s.Register("gather_hwinfo_v2", m.gatherHWInfoV2)
	s.Register("sync_kernel_registry", adapt(m.syncKernelRegistry))
	s.RegisterInline("check_creating", adapt(m.checkCreating))
	s.RegisterInline("check_running", adapt(m.checkRunning))
	s.Register("check_and_pull", adapt(m.checkAndPull))
	s.RegisterInline("check_pulling", adapt(m.checkPulling))
	s.Register("get_logs", adapt(m.getLogs))
	s.Register("upload_file", adapt(m.uploadFile))
	s.Register("download_file", adapt(m.downloadFile))
	s.Register("download_single", adapt(m.downloadSingle))
	s.Register("list_files", adapt(m.listFiles))
	s.Register("commit", adapt(m.commit))
	s.Register("get_commit_status", adapt(m.getCommitStatus))
	s.Register("push_image", adapt(m.pushImage))
	s.Register("purge_images", m.purgeImages)
	s.Register("create_local_network", adapt(m.createLocalNetwork))
	s.Register("destroy_local_network", adapt(m.destroyLocalNetwork))
	s.Register("assign_port", m.assignPort)
	s.Register("release_port", adapt(m.releasePort))
	s.Register("scan_gpu_alloc_map", m.scanGPUAllocMap)
	s.Register("reset_agent", m.resetAgent)
	s.Register("shutdown_agent", m.shutdownAgent)
	// bai-agent's own additions for `bai-agent ctl` (a manager never
	// calls them).
	s.Register("bai_status", m.baiStatus)
	s.Register("bai_images", m.baiImages)
	s.RegisterInline("bai_task", adapt(m.baiTask))
	if _, ok := a.(Runners); ok {
		s.Register("execute", adapt(m.execute))
		s.Register("interrupt_kernel", adapt(m.interruptKernel))
		s.Register("get_completions", adapt(m.getCompletions))
		s.Register("ping_kernel", adapt(m.pingKernel))
		s.Register("trigger_batch_execution", adapt(m.triggerBatch))
	} else {
		for _, name := range []string{"execute", "interrupt_kernel", "get_completions", "trigger_batch_execution", "ping_kernel"} {
			s.Register(name, runnerMissing(name))
		}
	}
	if _, ok := a.(Runners); ok {
		s.Register("start_service", adapt(m.startService))
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

// A method with arguments takes them as one struct, which adapt binds
// from the call (bind.go describes the rpc tags); create_kernels and
// purge_images, whose arguments are irregular, bind their own.

type pingArgs struct {
	Msg string `rpc:"0,msg"`
}

func (m *methods) ping(_ context.Context, a pingArgs) (any, error) {
	return a.Msg, nil
}

// createKernels binds its arguments with bindCreateRequest (in two steps).
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

type destroyKernelArgs struct {
	KernelID       string `rpc:"0,kernel_id"`
	SessionID      string `rpc:"1,session_id,optional"`
	Reason         string `rpc:"2,reason,optional"`
	SuppressEvents bool   `rpc:"3,suppress_events,optional"`
}

func (m *methods) destroyKernel(ctx context.Context, a destroyKernelArgs) (any, error) {
	return nil, m.a.DestroyKernel(ctx, a.KernelID, a.SessionID, a.Reason, a.SuppressEvents)
}

// restart_kernel(session_id, kernel_id, kernel_image, updated_config):
// kernel_image is not read.
type restartKernelArgs struct {
	SessionID     string `rpc:"0,session_id"`
	KernelID      string `rpc:"1,kernel_id"`
	UpdatedConfig struct {
		Environ map[string]string `rpc:"environ,default={}"`
	} `rpc:"3,updated_config,optional"`
}

func (m *methods) restartKernel(ctx context.Context, a restartKernelArgs) (any, error) {
	updated := a.UpdatedConfig.Environ
	if updated == nil { // no updated_config
		updated = map[string]string{}
	}
	ri, err := m.a.RestartKernel(ctx, a.SessionID, a.KernelID, updated)
	if err != nil {
		return nil, err
	}
	return restartInfoWire(ri), nil
}

type getLocalConfigArgs struct {
	// The manager passes agent_id positionally here.
	AgentID *string `rpc:"0,agent_id,optional"`
}

func (m *methods) getLocalConfig(_ context.Context, a getLocalConfigArgs) (any, error) {
	if a.AgentID != nil && *a.AgentID != m.a.ID() {
		return nil, &PyError{Name: "AgentIdNotFoundError", Msg: fmt.Sprintf("agent %s is not served here", *a.AgentID)}
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

// kernelSessionPair is a (kernel_id, session_id) pair.
type kernelSessionPair [2]string

func (p *kernelSessionPair) decodeArg(v any, path string) error {
	l, err := asList(v, path)
	if err != nil {
		return err
	}
	if len(l) != 2 {
		return typeError("%s: expected (kernel_id, session_id)", path)
	}
	for i := range p {
		if p[i], err = asStr(l[i], fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	return nil
}

type syncKernelRegistryArgs struct {
	Pairs []kernelSessionPair `rpc:"0,raw_kernel_session_ids"`
}

func (m *methods) syncKernelRegistry(ctx context.Context, a syncKernelRegistryArgs) (any, error) {
	var pairs [][2]string
	for _, p := range a.Pairs {
		pairs = append(pairs, p)
	}
	return nil, m.a.SyncKernelRegistry(ctx, pairs)
}

// kernelArgs is the arguments of the methods that take a kernel_id alone.
type kernelArgs struct {
	KernelID string `rpc:"0,kernel_id"`
}

func (m *methods) checkCreating(_ context.Context, a kernelArgs) (any, error) {
	return m.a.IsCreating(a.KernelID), nil
}

func (m *methods) checkRunning(_ context.Context, a kernelArgs) (any, error) {
	return m.a.IsRunning(a.KernelID), nil
}

type checkAndPullArgs struct {
	ImageConfigs map[string]imageConfigArgs `rpc:"0,image_configs"`
}

func (m *methods) checkAndPull(ctx context.Context, a checkAndPullArgs) (any, error) {
	configs := map[string]agent.ImageConfig{}
	for name, ic := range a.ImageConfigs {
		configs[name] = ic.agent()
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

type checkPullingArgs struct {
	ImageName string `rpc:"0,image_name"`
}

func (m *methods) checkPulling(_ context.Context, a checkPullingArgs) (any, error) {
	return m.a.IsPulling(a.ImageName), nil
}

func (m *methods) getLogs(ctx context.Context, a kernelArgs) (any, error) {
	logs, err := m.a.Logs(ctx, a.KernelID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"logs": logs}, nil
}

// fileData is bytes (or str).
type fileData []byte

func (d *fileData) decodeArg(v any, path string) error {
	switch x := v.(type) {
	case []byte:
		*d = x
	case string:
		*d = []byte(x)
	default:
		return wrongType(path, "bytes", v)
	}
	return nil
}

type uploadFileArgs struct {
	KernelID string   `rpc:"0,kernel_id"`
	Filename string   `rpc:"1,filename"`
	Filedata fileData `rpc:"2,filedata"`
}

func (m *methods) uploadFile(ctx context.Context, a uploadFileArgs) (any, error) {
	return nil, m.a.UploadFile(ctx, a.KernelID, a.Filename, a.Filedata)
}

type kernelFileArgs struct {
	KernelID string `rpc:"0,kernel_id"`
	Filepath string `rpc:"1,filepath"`
}

func (m *methods) downloadFile(ctx context.Context, a kernelFileArgs) (any, error) {
	return m.a.DownloadFile(ctx, a.KernelID, a.Filepath)
}

func (m *methods) downloadSingle(ctx context.Context, a kernelFileArgs) (any, error) {
	return m.a.DownloadSingle(ctx, a.KernelID, a.Filepath)
}

type listFilesArgs struct {
	KernelID string `rpc:"0,kernel_id"`
	Path     string `rpc:"1,path"`
}

func (m *methods) listFiles(ctx context.Context, a listFilesArgs) (any, error) {
	l, err := m.a.ListFiles(ctx, a.KernelID, a.Path)
	if err != nil {
		return nil, err
	}
	return listingWire(l), nil
}

// commit(kernel_id, subdir, *, canonical, filename, extra_labels)
type commitArgs struct {
	KernelID    string            `rpc:"0,kernel_id"`
	Subdir      string            `rpc:"1,subdir"`
	Canonical   string            `rpc:"-,canonical,optional"`
	Filename    string            `rpc:"-,filename,optional"`
	ExtraLabels map[string]string `rpc:"-,extra_labels,default={}"`
}

func (m *methods) commit(ctx context.Context, a commitArgs) (any, error) {
	return m.a.Commit(ctx, a.KernelID, a.Subdir, a.Canonical, a.Filename, a.ExtraLabels)
}

type getCommitStatusArgs struct {
	KernelID string `rpc:"0,kernel_id"`
	Subdir   string `rpc:"1,subdir"`
}

func (m *methods) getCommitStatus(_ context.Context, a getCommitStatusArgs) (any, error) {
	return m.a.CommitStatus(a.KernelID, a.Subdir)
}

// pushRef is push_image's image_ref: an ImageRef, or its canonical name.
type pushRef struct {
	canonical string
	isLocal   bool
}

func (r *pushRef) decodeArg(v any, path string) error {
	if ref, ok := v.(wire.ImageRef); ok {
		r.canonical, r.isLocal = ref.Canonical(), ref.IsLocal
		return nil
	}
	s, err := asStr(v, path)
	if err != nil {
		return wrongType(path, "ImageRef", v)
	}
	r.canonical = s
	return nil
}

type pushImageArgs struct {
	ImageRef     pushRef      `rpc:"0,image_ref"`
	RegistryConf registryArgs `rpc:"1,registry_conf,optional"`
}

func (m *methods) pushImage(ctx context.Context, a pushImageArgs) (any, error) {
	id, err := m.a.PushImage(ctx, a.ImageRef.canonical, a.ImageRef.isLocal, agent.RegistryInfo(a.RegistryConf))
	if err != nil {
		return nil, err
	}
	return map[string]any{"bgtask_id": id, "canonical": a.ImageRef.canonical}, nil
}

type purgeImagesArgs struct {
	Images  []string `rpc:"0,images"`
	Force   bool     `rpc:"1,force,optional"`
	NoPrune bool     `rpc:"2,noprune,optional"`
}

// purgeImages reads purge_images(images, force, noprune), or the v2 form's
// one request dict with those keys, which is bound as the keywords; None
// images are missing, not wrong-typed.
func (m *methods) purgeImages(ctx context.Context, c *Call) (any, error) {
	images, _ := c.Arg(0, "images")
	if req, ok := images.(msgpack.Map); ok {
		c = &Call{Method: c.Method, Kwargs: req}
		images, _ = req.Get("images")
	}
	if images == nil {
		return nil, typeError("purge_images() missing required argument: 'images'")
	}
	a, err := bindArgs[purgeImagesArgs](c)
	if err != nil {
		return nil, err
	}
	res, err := m.a.PurgeImages(ctx, a.Images, a.Force, a.NoPrune)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(res))
	for i, r := range res {
		out[i] = r
	}
	return map[string]any{"responses": out}, nil
}

type networkArgs struct {
	NetworkName string `rpc:"0,network_name"`
}

func (m *methods) createLocalNetwork(ctx context.Context, a networkArgs) (any, error) {
	return nil, m.a.CreateLocalNetwork(ctx, a.NetworkName)
}

func (m *methods) destroyLocalNetwork(ctx context.Context, a networkArgs) (any, error) {
	return nil, m.a.DestroyLocalNetwork(ctx, a.NetworkName)
}

func (m *methods) assignPort(context.Context, *Call) (any, error) { return m.a.AssignPort() }

type releasePortArgs struct {
	PortNo int `rpc:"0,port_no"`
}

func (m *methods) releasePort(_ context.Context, a releasePortArgs) (any, error) {
	m.a.ReleasePort(a.PortNo)
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

type shutdownServiceArgs struct {
	KernelID string `rpc:"0,kernel_id,optional"`
	Service  string `rpc:"1,service,optional"`
}

// shutdownService never fails, as the Python agent's (which logs and
// returns None): the manager calls it to stop an app and does not expect
// an error, so arguments it cannot read mean there is nothing to stop.
func (m *methods) shutdownService(_ context.Context, c *Call) (any, error) {
	a, err := bindArgs[shutdownServiceArgs](c)
	if r, ok := m.a.(Runners); ok && err == nil && a.KernelID != "" && a.Service != "" {
		r.ShutdownService(a.KernelID, a.Service)
	}
	return nil, nil
}

// shutdownAgent is a no-op, as in the Python agent.
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

type baiTaskArgs struct {
	TaskID string `rpc:"0,task_id"`
}

func (m *methods) baiTask(_ context.Context, a baiTaskArgs) (any, error) {
	t, ok := m.a.Task(strings.ReplaceAll(a.TaskID, "-", ""))
	if !ok {
		return nil, &PyError{Name: "KeyError", Msg: "no background task " + a.TaskID}
	}
	return map[string]any{"task_id": t.ID, "name": t.Name, "status": string(t.Status), "current": t.Current, "total": t.Total, "message": t.Message}, nil
}
