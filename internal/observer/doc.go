// Package observer holds the agent's periodic reconcilers that act on
// what others report about its kernels, as upstream's agent observers and
// periodic tasks do:
//
//   - OrphanReaper (upstream src/ai/backend/agent/observer/
//     orphan_kernel_cleanup.py) destroys, quietly, the kernels the manager
//     has stopped checking although it still checks this agent: the
//     manager's stale-kernel sweep stamps agent:last_check:{agent} and
//     each kernel's kernel:presence:{kernel} last_check in the live Redis
//     database, and a kernel whose stamp lags the agent's by more than 600
//     s is one the manager no longer knows.
//   - AbuseReports (upstream src/ai/backend/agent/tasks/
//     cleanup_reported_kernels.py and AbstractAgent.cleanup_reported_kernels)
//     reads the report.*.json files an outside detector leaves in [agent]
//     abuse-report-path, destroys the reported kernels when [agent]
//     force-terminate-abusing-containers is set, and mirrors what it saw in
//     the abuse_report hash that the manager's API reads.
//
// Why a package of its own: both loops only read Redis and files and call
// two methods of the agent (list its kernels, destroy one). Behind the
// small interfaces here (Agent, PresenceStore, AbuseStore) their decisions
// are tested without Docker or Redis, every Redis call has its own
// deadline, and a Redis outage or a hostile file costs one tick, never the
// agent. The abuse-report folder may be written by other programs, so it
// is only read through internal/safefs (no link followed, reads capped,
// every file call under a deadline).
package observer
