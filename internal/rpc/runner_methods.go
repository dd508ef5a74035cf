package rpc

import (
	"context"
	"time"

	"github.com/bai-agent/bai-agent/internal/coderunner"
)

// Runners is code execution through each kernel's runner.
type Runners interface {
	Execute(ctx context.Context, sessionID, kernelID string, req coderunner.Request) (map[string]any, error)
	Interrupt(kernelID string) error
	Completions(ctx context.Context, kernelID, text string, opts map[string]any) ([]any, error)
	PingKernel(ctx context.Context, kernelID string) (float64, error)
	TriggerBatch(ctx context.Context, sessionID, kernelID, code string, timeout *time.Duration) error
	StartService(ctx context.Context, kernelID, name string, opts map[string]any) (map[string]any, error)
	ShutdownService(kernelID, name string)
}

// start_service(kernel_id, service, opts) -> {"status": started|running|
// failed, "error"?}.
func (m *methods) startService(ctx context.Context, c *Call) (any, error) {
	kid, err := m.strArg(c, 0, "kernel_id")
	if err != nil {
		return nil, err
	}
	name, err := m.strArg(c, 1, "service")
	if err != nil {
		return nil, err
	}
	opts, err := optMap(c, 2, "opts")
	if err != nil {
		return nil, err
	}
	return m.run().StartService(ctx, kid, name, opts)
}

func optMap(c *Call, i int, name string) (map[string]any, error) {
	v, ok := c.Arg(i, name)
	if !ok || v == nil {
		return map[string]any{}, nil
	}
	if _, err := asMap(v, name); err != nil {
		return nil, err
	}
	return plain(v).(map[string]any), nil
}

func optSeconds(v any, path string) (*time.Duration, error) {
	var f float64
	switch x := v.(type) {
	case nil:
		return nil, nil
	case float64:
		f = x
	case float32:
		f = float64(x)
	case int64:
		f = float64(x)
	case uint64:
		f = float64(x)
	default:
		return nil, wrongType(path, "float", v)
	}
	if f < 0 {
		return nil, typeError("%s: %v is negative", path, f)
	}
	d := time.Duration(f * float64(time.Second))
	return &d, nil
}

// execute(session_id, kernel_id, major_api_version, run_id, mode, code,
// opts, flush_timeout)
func (m *methods) execute(ctx context.Context, c *Call) (any, error) {
	sid, err := m.strArg(c, 0, "session_id")
	if err != nil {
		return nil, err
	}
	kid, err := m.strArg(c, 1, "kernel_id")
	if err != nil {
		return nil, err
	}
	api := 3
	if v, ok := c.Arg(2, "api_version"); ok && v != nil {
		if api, err = asInt(v, "api_version"); err != nil {
			return nil, err
		}
	}
	req := coderunner.Request{APIVersion: api}
	if v, ok := c.Arg(3, "run_id"); ok {
		if req.RunID, err = asOptStr(v, "run_id"); err != nil {
			return nil, err
		}
	}
	if req.Mode, err = m.strArg(c, 4, "mode"); err != nil {
		return nil, err
	}
	switch req.Mode {
	case "query", "batch", "input", "continue":
	default:
		return nil, typeError("execute: unknown mode %s", PyRepr(req.Mode))
	}
	if v, ok := c.Arg(5, "text"); ok {
		if req.Code, err = asOptStr(v, "code"); err != nil {
			return nil, err
		}
	}
	if req.Opts, err = optMap(c, 6, "opts"); err != nil {
		return nil, err
	}
	if v, ok := c.Arg(7, "flush_timeout"); ok {
		if req.Flush, err = optSeconds(v, "flush_timeout"); err != nil {
			return nil, err
		}
	}
	return m.run().Execute(ctx, sid, kid, req)
}

func (m *methods) run() Runners {
	r, _ := m.a.(Runners)
	return r
}

// interrupt_kernel(kernel_id): SIGINT to what runs; answers at once.
func (m *methods) interruptKernel(ctx context.Context, c *Call) (any, error) {
	kid, err := m.strArg(c, 0, "kernel_id")
	if err != nil {
		return nil, err
	}
	if err := m.run().Interrupt(kid); err != nil {
		return nil, err
	}
	return map[string]any{"status": "finished"}, nil
}

// get_completions(kernel_id, text, opts) -> {"result": {status, error,
// suggestions}} (CodeCompletionResp).
func (m *methods) getCompletions(ctx context.Context, c *Call) (any, error) {
	kid, err := m.strArg(c, 0, "kernel_id")
	if err != nil {
		return nil, err
	}
	text, err := m.strArg(c, 1, "text")
	if err != nil {
		return nil, err
	}
	opts, err := optMap(c, 2, "opts")
	if err != nil {
		return nil, err
	}
	sugg, err := m.run().Completions(ctx, kid, text, opts)
	if err != nil {
		return map[string]any{"result": map[string]any{"status": "failed", "error": err.Error(), "suggestions": []any{}}}, nil
	}
	return map[string]any{"result": map[string]any{"status": "finished", "error": nil, "suggestions": sugg}}, nil
}

// ping_kernel(kernel_id) -> {"started_at": float}, or None when the runner
// does not answer.
func (m *methods) pingKernel(ctx context.Context, c *Call) (any, error) {
	kid, err := m.strArg(c, 0, "kernel_id")
	if err != nil {
		return nil, err
	}
	started, err := m.run().PingKernel(ctx, kid)
	if err != nil {
		return nil, nil
	}
	return map[string]any{"started_at": started}, nil
}

// trigger_batch_execution(session_id, kernel_id, code, timeout): starts
// the batch job and returns None at once.
func (m *methods) triggerBatch(ctx context.Context, c *Call) (any, error) {
	sid, err := m.strArg(c, 0, "session_id")
	if err != nil {
		return nil, err
	}
	kid, err := m.strArg(c, 1, "kernel_id")
	if err != nil {
		return nil, err
	}
	code := ""
	if v, ok := c.Arg(2, "code"); ok {
		if code, err = asOptStr(v, "code"); err != nil {
			return nil, err
		}
	}
	var timeout *time.Duration
	if v, ok := c.Arg(3, "timeout"); ok {
		if timeout, err = optSeconds(v, "timeout"); err != nil {
			return nil, err
		}
	}
	return nil, m.run().TriggerBatch(ctx, sid, kid, code, timeout)
}
