// Package telemetry exports OpenTelemetry traces when [otel] enabled =
// true, as upstream's agent does (ai.backend.logging.otel): one span per
// RPC method call (rpc.Server.SetTracer) and, under it, a span per kernel
// operation with one child span per step (agent.WithStepTracer).
//
// Spans go through the SDK's batch span processor: a bounded queue
// ([otel] max-queue-size, upstream's default 65536; spans beyond it are
// dropped), batches of at most max-export-batch-size, each export bounded
// by ExportTimeout. Ending a span only enqueues it, so a collector that is
// down or slow never blocks the agent; Shutdown waits at most its
// context's deadline.
//
// Differences from upstream: the exporter speaks OTLP over HTTP/protobuf
// (POST {endpoint}/v1/traces), not gRPC, so endpoint must name the
// collector's OTLP/HTTP receiver (port 4318 by convention); config refuses
// an endpoint on port 4317 (gRPC). Logs are not exported over OTLP: no
// OTLP log exporter is served to this build; send them to [logging.loki].
package telemetry
