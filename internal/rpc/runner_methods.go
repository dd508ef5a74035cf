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
type startServiceArgs struct {
	KernelID string         `rpc:"0,kernel_id"`
	Service  string         `rpc:"1,service"`
	Opts     map[string]any `rpc:"2,opts,default={}"`
}

func (m *methods) startService(ctx context.Context, a startServiceArgs) (any, error) {
	return m.run().StartService(ctx, a.KernelID, a.Service, a.Opts)
}

// seconds is a non-negative number of seconds.
type seconds time.Duration

func (s *seconds) decodeArg(v any, path string) error {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case float32:
		f = float64(x)
	case int64:
		f = float64(x)
	case uint64:
		f = float64(x)
	default:
		return wrongType(path, "float", v)
	}
	if f < 0 {
		return typeError("%s: %v is negative", path, f)
	}
	*s = seconds(f * float64(time.Second))
	return nil
}

// execMode is execute's mode.
type execMode string

func (em *execMode) decodeArg(v any, path string) error {
	s, err := asStr(v, path)
	if err != nil {
		return err
	}
	switch s {
	case "query", "batch", "input", "continue":
	default:
		return typeError("execute: unknown mode %s", PyRepr(s))
	}
	*em = execMode(s)
	return nil
}

// execute(session_id, kernel_id, major_api_version, run_id, mode, code,
// opts, flush_timeout). The keywords are bai-agent's own names (the
// manager passes them positionally).
type executeArgs struct {
	SessionID    string         `rpc:"0,session_id"`
	KernelID     string         `rpc:"1,kernel_id"`
	APIVersion   int            `rpc:"2,api_version,default=3"`
	RunID        string         `rpc:"3,run_id,optional"`
	Mode         execMode       `rpc:"4,mode"`
	Code         string         `rpc:"5,text,optional,path=code"`
	Opts         map[string]any `rpc:"6,opts,default={}"`
	FlushTimeout *seconds       `rpc:"7,flush_timeout,optional"`
}

func (m *methods) execute(ctx context.Context, a executeArgs) (any, error) {
	req := coderunner.Request{APIVersion: a.APIVersion, RunID: a.RunID, Mode: string(a.Mode), Code: a.Code, Opts: a.Opts, Flush: (*time.Duration)(a.FlushTimeout)}
	return m.run().Execute(ctx, a.SessionID, a.KernelID, req)
}

func (m *methods) run() Runners {
	r, _ := m.a.(Runners)
	return r
}

// interrupt_kernel(kernel_id): SIGINT to what runs; answers at once.
func (m *methods) interruptKernel(ctx context.Context, a kernelArgs) (any, error) {
	if err := m.run().Interrupt(a.KernelID); err != nil {
		return nil, err
	}
	return map[string]any{"status": "finished"}, nil
}

// get_completions(kernel_id, text, opts) -> {"result": {status, error,
// suggestions}} (CodeCompletionResp).
type getCompletionsArgs struct {
	KernelID string         `rpc:"0,kernel_id"`
	Text     string         `rpc:"1,text"`
	Opts     map[string]any `rpc:"2,opts,default={}"`
}

func (m *methods) getCompletions(ctx context.Context, a getCompletionsArgs) (any, error) {
	sugg, err := m.run().Completions(ctx, a.KernelID, a.Text, a.Opts)
	if err != nil {
		return map[string]any{"result": map[string]any{"status": "failed", "error": err.Error(), "suggestions": []any{}}}, nil
	}
	return map[string]any{"result": map[string]any{"status": "finished", "error": nil, "suggestions": sugg}}, nil
}

// ping_kernel(kernel_id) -> {"started_at": float}, or None when the runner
// does not answer.
func (m *methods) pingKernel(ctx context.Context, a kernelArgs) (any, error) {
	started, err := m.run().PingKernel(ctx, a.KernelID)
	if err != nil {
		return nil, nil
	}
	return map[string]any{"started_at": started}, nil
}

// trigger_batch_execution(session_id, kernel_id, code, timeout): starts
// the batch job and returns None at once.
type triggerBatchArgs struct {
	SessionID string   `rpc:"0,session_id"`
	KernelID  string   `rpc:"1,kernel_id"`
	Code      string   `rpc:"2,code,optional"`
	Timeout   *seconds `rpc:"3,timeout,optional"`
}

func (m *methods) triggerBatch(ctx context.Context, a triggerBatchArgs) (any, error) {
	return nil, m.run().TriggerBatch(ctx, a.SessionID, a.KernelID, a.Code, (*time.Duration)(a.Timeout))
}
