package rpc

import (
	"context"
	"fmt"
	"time"

	"github.com/bai-agent/bai-agent/internal/agent"
	"github.com/bai-agent/bai-agent/internal/backend"
)

// AgentMethods registers the agent's RPC methods on s.
func AgentMethods(s *Server, a *agent.Agent, be backend.Backend) {
	m := &methods{a: a, be: be}
	s.Register("ping", m.ping)
	s.Register("create_kernels", m.createKernels)
	s.Register("destroy_kernel", m.destroyKernel)
	s.Register("restart_kernel", m.restartKernel)
	s.Register("get_local_config", m.getLocalConfig)
	s.Register("health", m.health)
	s.Register("health_v2", m.health)
	s.Register("gather_hwinfo", m.gatherHWInfo)
	s.Register("gather_hwinfo_v2", m.gatherHWInfoV2)
	s.Register("sync_kernel_registry", m.syncKernelRegistry)
	s.Register("check_creating", m.checkCreating)
	s.Register("check_running", m.checkRunning)
}

type methods struct {
	a  *agent.Agent
	be backend.Backend
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
		out[i] = in.Wire()
	}
	return out, nil
}

func (m *methods) kernelID(c *Call, i int, name string) (string, error) {
	v, err := c.Required(i, name)
	if err != nil {
		return "", err
	}
	return asStr(v, name)
}

func (m *methods) destroyKernel(ctx context.Context, c *Call) (any, error) {
	kid, err := m.kernelID(c, 0, "kernel_id")
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
	sid, err := m.kernelID(c, 0, "session_id")
	if err != nil {
		return nil, err
	}
	kid, err := m.kernelID(c, 1, "kernel_id")
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
	return ri.Wire(), nil
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

func (m *methods) health(ctx context.Context, _ *Call) (any, error) {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	check := map[string]any{"service_group": "container", "component_id": "docker", "is_healthy": true, "last_checked_at": now, "error_message": nil}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := m.be.Ping(pctx); err != nil {
		check["is_healthy"] = false
		check["error_message"] = err.Error()
	}
	healthy := check["is_healthy"].(bool)
	status := "ok"
	if !healthy {
		status = "degraded"
	}
	return map[string]any{
		"status": status, "version": agent.Version, "component": "agent",
		"connectivity": map[string]any{"overall_healthy": healthy, "connectivity_checks": []any{check}, "timestamp": now},
	}, nil
}

func (m *methods) hwinfo() map[string]any {
	out := map[string]any{}
	for _, p := range m.a.Plugins() {
		md := map[string]any{}
		for k, v := range p.HWInfo() {
			md[k] = v
		}
		out[string(p.Key())] = map[string]any{"status": "healthy", "status_info": nil, "metadata": md}
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
	kid, err := m.kernelID(c, 0, "kernel_id")
	if err != nil {
		return nil, err
	}
	return m.a.IsCreating(kid), nil
}

func (m *methods) checkRunning(_ context.Context, c *Call) (any, error) {
	kid, err := m.kernelID(c, 0, "kernel_id")
	if err != nil {
		return nil, err
	}
	return m.a.IsRunning(kid), nil
}
