// Package metrics is the agent's Prometheus exposition and its internal
// HTTP server (/metrics, /health, /livez, /readyz on internal-addr, 6003 by
// default, TLS when ssl-enabled).
//
// The registry is a small in-house one (counters, gauges, histograms with
// labels, series deletion, text format 0.0.4) rather than client_golang:
// the agent exposes a fixed table of metrics, and avoiding the protobuf
// stack keeps its footprint small. The output passes `promtool check
// metrics` apart from the two findings the fixed Backend.AI names cause.
package metrics
