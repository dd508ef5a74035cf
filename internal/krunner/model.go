package krunner

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// Model services of inference sessions (start-model-service): the agent
// sends one model of the session's model definition; the runner starts
// its start_command as a service named "<model>-<port>" in the model's
// directory and answers model-service-result. Health checks, when
// enabled, poll http://localhost:<port><path> and report changes as
// model-service-status for as long as the service runs.

// modelInfo is one ModelConfig as the agent sends it.
type modelInfo struct {
	Name      string        `json:"name"`
	ModelPath string        `json:"model_path"`
	Service   *modelService `json:"service"`
}

type modelService struct {
	PreStartActions []Action     `json:"pre_start_actions"`
	StartCommand    any          `json:"start_command"`
	Shell           *string      `json:"shell"`
	Port            int          `json:"port"`
	HealthCheck     *healthCheck `json:"health_check"`
}

// healthCheck is ModelHealthCheck with upstream's defaults.
type healthCheck struct {
	Enable             bool    `json:"enable"`
	Interval           float64 `json:"interval"`
	Path               string  `json:"path"`
	MaxRetries         int     `json:"max_retries"`
	MaxWaitTime        float64 `json:"max_wait_time"`
	ExpectedStatusCode int     `json:"expected_status_code"`
	InitialDelay       float64 `json:"initial_delay"`
}

func (h *healthCheck) defaults() {
	if h.Interval <= 0 {
		h.Interval = 10
	}
	if h.Path == "" {
		h.Path = "/health"
	}
	if h.MaxWaitTime <= 0 {
		h.MaxWaitTime = 15
	}
	if h.ExpectedStatusCode == 0 {
		h.ExpectedStatusCode = 200
	}
}

// modelStartGrace is how long a model service without a health check may
// take to open its port before it is reported started anyway (upstream
// does not wait at all; the agent waits 10 s for the answer).
var modelStartGrace = 5 * time.Second

func secs(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// startModelService starts a model's service and returns the
// model-service-result: started once it answers (its health check passes,
// or without one its port opens or it is still alive after a grace
// period); failed when it cannot start, exits first, or its health check
// fails more than max_retries times.
func (r *Runner) startModelService(payload []byte) map[string]any {
	failed := func(msg string) map[string]any { return map[string]any{"status": "failed", "error": msg} }
	var m modelInfo
	if err := json.Unmarshal(payload, &m); err != nil {
		return failed("invalid start-model-service request: " + err.Error())
	}
	if m.Service == nil {
		return failed("service info not provided")
	}
	s := m.Service
	if s.Port < 1 || s.Port > 65535 {
		return failed(fmt.Sprintf("invalid model service port %d", s.Port))
	}
	name := fmt.Sprintf("%s-%d", m.Name, s.Port)
	if st, err := os.Stat(m.ModelPath); err != nil || !st.IsDir() {
		return failed("the model directory does not exist: " + m.ModelPath)
	}
	shell := "/bin/bash" // upstream's DEFAULT_SHELL
	if s.Shell != nil {
		shell = *s.Shell
	}
	def := &ServiceDef{Command: s.StartCommand, Shell: &shell, PrestartActions: s.PreStartActions}
	switch def.Command.(type) {
	case string, []any:
	default:
		return failed("the model service has no start_command")
	}
	req := serviceReq{Name: name, Port: s.Port, Ports: []int{s.Port}, Protocol: "http"}
	r.svc.mu.Lock()
	if _, ok := r.svc.running[name]; ok {
		r.svc.mu.Unlock()
		return map[string]any{"status": "running"}
	}
	argv, env, err := r.buildService(req, def, req.Ports)
	if err != nil {
		r.svc.mu.Unlock()
		return failed(err.Error())
	}
	p, errMsg := r.spawnService(name, argv, env, m.ModelPath)
	r.svc.mu.Unlock()
	if p == nil {
		return failed(errMsg)
	}
	hc := s.HealthCheck
	if hc == nil || !hc.Enable {
		// Up when the port opens, or alive after the grace period.
		deadline := time.Now().Add(modelStartGrace)
		for time.Now().Before(deadline) && !portOpen(s.Port) {
			select {
			case <-p.exited:
				return failed("the process did not start properly: " + argv[0])
			case <-time.After(100 * time.Millisecond):
			}
		}
		go r.emitJSON("model-service-status", map[string]any{"model_name": m.Name, "is_healthy": true})
		return map[string]any{"status": "started"}
	}
	hc.defaults()
	url := fmt.Sprintf("http://localhost:%d%s", s.Port, hc.Path)
	client := &http.Client{Timeout: secs(hc.MaxWaitTime)}
	healthy := func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == hc.ExpectedStatusCode
	}
	for tries := 0; ; tries++ {
		start := time.Now()
		if healthy() {
			r.emitJSON("model-service-status", map[string]any{"model_name": m.Name, "is_healthy": true})
			go r.watchModelHealth(m.Name, p, hc, healthy)
			return map[string]any{"status": "started"}
		}
		if tries >= hc.MaxRetries {
			r.shutdownService(name)
			return failed(fmt.Sprintf("the model service did not pass its health check (%s) in %d tries", url, tries+1))
		}
		select {
		case <-p.exited:
			return failed("the process did not start properly: " + argv[0])
		case <-time.After(secs(hc.Interval) - time.Since(start)):
		}
	}
}

// watchModelHealth keeps checking a started model service and reports
// each change of health (model-service-status) until it exits.
func (r *Runner) watchModelHealth(model string, p *svcProc, hc *healthCheck, healthy func() bool) {
	cur, fails := true, 0
	for {
		select {
		case <-p.exited:
			return
		case <-time.After(secs(hc.Interval)):
		}
		if healthy() {
			fails = 0
			if !cur {
				cur = true
				r.emitJSON("model-service-status", map[string]any{"model_name": model, "is_healthy": true})
			}
			continue
		}
		fails++
		if cur && fails > hc.MaxRetries {
			cur = false
			r.emitJSON("model-service-status", map[string]any{"model_name": model, "is_healthy": false})
		}
	}
}

func portOpen(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
