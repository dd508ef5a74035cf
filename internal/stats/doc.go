// Package stats samples node, container and process metrics from sysfs
// and /proc (never the Docker stats API by default), keeps Backend.AI's
// moving statistics, and serializes MetricValue exactly as the Python
// agent does (decimal strings, pct rules, stats.version 2).
//
// Fault isolation: every container is read on a goroutine of its own
// under its own deadline (2 s by default). A container whose read is still
// stuck from a previous cycle (a frozen cgroup, a hung network namespace,
// a D-state process) is skipped, not waited for, so it delays only its own
// numbers. No lock is held across I/O, and nothing here is shared with the
// heartbeat or the lifecycle code.
package stats
