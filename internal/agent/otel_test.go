package agent

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/telemetry"
	"github.com/bai-agent/bai-agent/internal/telemetry/otlptest"
)

// A real creation on the fake runtime under a step tracer ([otel]
// enabled): one "kernel.create" span, parented by the caller's span, with
// one child per creation step, exported over OTLP/HTTP.
func TestCreationSpans(t *testing.T) {
	recv := otlptest.Start(t)
	p, err := telemetry.Start(context.Background(), telemetry.Options{
		Endpoint: recv.URL, AgentID: "i-otel", ServiceName: "agent", BatchTimeout: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	c := newCore(t, nil, nil)
	ctx, end := p.RPC(context.Background(), "create_kernels", "i-otel")
	ctx = WithStepTracer(ctx, p)
	if _, err := c.agent.CreateKernels(ctx, fakeRequest(uuid.NewString(), nil)); err != nil {
		t.Fatal(err)
	}
	end("")
	rpcSpan := recv.Wait(t, 10*time.Second, "rpc.create_kernels")
	create := recv.Wait(t, 10*time.Second, "kernel.create")
	if !bytes.Equal(create.ParentSpanId, rpcSpan.SpanId) || create.Attr("backendai.agent.id") != "i-otel" {
		t.Fatalf("kernel.create span %v not under the RPC span %x", create, rpcSpan.SpanId)
	}
	for _, s := range c.agent.createPlan {
		sp := recv.Wait(t, 10*time.Second, "kernel.create."+s.name)
		if !bytes.Equal(sp.ParentSpanId, create.SpanId) || !bytes.Equal(sp.TraceId, rpcSpan.TraceId) {
			t.Fatalf("step span %s not under kernel.create", s.name)
		}
		if sp.StartTimeUnixNano < create.StartTimeUnixNano || sp.EndTimeUnixNano > create.EndTimeUnixNano {
			t.Fatalf("step span %s outside kernel.create", s.name)
		}
	}
}
