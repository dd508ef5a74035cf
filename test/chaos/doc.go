// Package chaos holds the chaos soak of bai-agent (issue 25): one agent
// binary with Redis (reached through a toxiproxy fault proxy the test
// controls), etcd and a dockerd of its own, driven by workers through
// the agent's Callosum RPC as a manager drives it, while a fault driver
// kills, stops, freezes and cuts those components at random moments, in
// overlapping combinations. Invariants are checked while it runs and at
// the end: every kernel_started event is followed by kernel_terminated or
// the kernel is alive and adopted, nothing is duplicated or leaked, every
// RPC answers or fails within its deadline, the agent's RSS and goroutines
// stay bounded, and no event is lost across the outages.
//
// The package has only tests. TestChaosSoakShort_Integration is the
// short form the suite runs (every fault kind at least once, a fixed
// seed: BAI_CHAOS_SEED changes it); scripts/chaos.sh DURATION runs the
// long form (TestChaosSoak_Integration with BAI_CHAOS_DURATION). With
// BAI_CHAOS_REPORT set, the end-of-run table is written to that file.
package chaos
