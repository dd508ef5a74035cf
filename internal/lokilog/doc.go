// Package lokilog ships the agent's own log records to a Loki push
// endpoint (POST /loki/api/v1/push, JSON), labelled agent_id, level and,
// for records about a kernel, kernel_id. Records are batched and retried
// with backoff from a bounded buffer that drops (and counts) rather than
// blocking: an unreachable Loki never slows the agent.
package lokilog
