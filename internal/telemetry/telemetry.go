package telemetry

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Options configure the exporter. Zero sizes and durations take the
// defaults below.
type Options struct {
	// Endpoint is the collector's OTLP/HTTP base URL ("http://host:4318");
	// spans are posted to {Endpoint}/v1/traces.
	Endpoint string
	// Resource attributes, as upstream's OpenTelemetrySpec.to_resource.
	ServiceName, ServiceVersion, InstanceID, InstanceName string
	// AgentID is set on every span as backendai.agent.id.
	AgentID string
	// MaxQueueSize bounds the spans waiting for export (default 65536).
	MaxQueueSize int
	// MaxExportBatchSize bounds one export (default 4096).
	MaxExportBatchSize int
	// BatchTimeout is the longest a span waits for its batch (default 5 s).
	BatchTimeout time.Duration
	// ExportTimeout bounds one export request, retries included
	// (default 10 s).
	ExportTimeout time.Duration
}

// Provider exports the agent's spans.
type Provider struct {
	tp      *sdktrace.TracerProvider
	tracer  trace.Tracer
	agentID string
}

// Start builds the exporter. It does not dial: the first export does.
func Start(ctx context.Context, o Options) (*Provider, error) {
	u, err := url.Parse(o.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("otel endpoint %q: want http://host:port or https://host:port", o.Endpoint)
	}
	if o.MaxQueueSize <= 0 {
		o.MaxQueueSize = 65536
	}
	if o.MaxExportBatchSize <= 0 {
		o.MaxExportBatchSize = 4096
	}
	if o.MaxExportBatchSize > o.MaxQueueSize {
		o.MaxExportBatchSize = o.MaxQueueSize
	}
	if o.BatchTimeout <= 0 {
		o.BatchTimeout = 5 * time.Second
	}
	if o.ExportTimeout <= 0 {
		o.ExportTimeout = 10 * time.Second
	}
	opts := []otlptracehttp.Option{
		otlptracehttp.WithEndpointURL(strings.TrimSuffix(u.String(), "/") + "/v1/traces"),
		otlptracehttp.WithTimeout(o.ExportTimeout),
		// Retries stay inside one export's timeout: a down collector costs
		// at most ExportTimeout per batch, on the exporter's goroutine.
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{
			Enabled: true, InitialInterval: 500 * time.Millisecond, MaxInterval: 2 * time.Second, MaxElapsedTime: o.ExportTimeout,
		}),
	}
	if u.Scheme == "http" {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("otel exporter: %w", err)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", o.ServiceName),
		attribute.String("service.version", o.ServiceVersion),
		attribute.String("service.instance.id", o.InstanceID),
		attribute.String("service.instance.name", o.InstanceName),
	)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithBatcher(exp,
			sdktrace.WithMaxQueueSize(o.MaxQueueSize),
			sdktrace.WithMaxExportBatchSize(o.MaxExportBatchSize),
			sdktrace.WithBatchTimeout(o.BatchTimeout),
			sdktrace.WithExportTimeout(o.ExportTimeout),
		),
	)
	return &Provider{tp: tp, tracer: tp.Tracer("github.com/bai-agent/bai-agent"), agentID: o.AgentID}, nil
}

// Shutdown exports what is queued, within ctx's deadline, and stops.
func (p *Provider) Shutdown(ctx context.Context) error { return p.tp.Shutdown(ctx) }

// ForceFlush exports what is queued now, within ctx's deadline.
func (p *Provider) ForceFlush(ctx context.Context) error { return p.tp.ForceFlush(ctx) }

// RPC starts the span of one RPC method call (rpc.Server.SetTracer); end
// takes the Python exception name of a failure ("" on success).
func (p *Provider) RPC(ctx context.Context, method, agentID string) (context.Context, func(exception string)) {
	ctx, span := p.tracer.Start(ctx, "rpc."+method, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attribute.String("rpc.system", "callosum"),
		attribute.String("rpc.method", method),
		attribute.String("backendai.agent.id", agentID),
	))
	return ctx, func(exc string) {
		if exc != "" {
			span.SetAttributes(attribute.String("exception.type", exc))
			span.SetStatus(codes.Error, exc)
		}
		span.End()
	}
}

// Start starts a span named name (agent.StepTracer): a kernel operation
// ("kernel.create") or one of its steps ("kernel.create.image"). end
// records err.
func (p *Provider) Start(ctx context.Context, name string) (context.Context, func(err error)) {
	ctx, span := p.tracer.Start(ctx, name, trace.WithAttributes(attribute.String("backendai.agent.id", p.agentID)))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
