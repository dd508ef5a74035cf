// Package monitor runs the statistics loops: node, containers and
// processes at their configured intervals, each loop on its own goroutine
// with its own Redis connection and deadlines. It feeds the Redis stat
// keys the manager reads ({agent_id} and {kernel_id} in DB 0, msgpack) and
// the Prometheus gauges, and removes the series of gone kernels.
package monitor
