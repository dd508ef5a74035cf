// Package cgroup reads per-container resource counters straight from the
// cgroup filesystem (v1, v2 and hybrid hosts) and /proc, without the
// Docker API: a read is a few small files, 1-10 ms, instead of a 100-500 ms
// round trip through dockerd per container.
//
// Paths are resolved once per container from its main PID
// (/proc/<pid>/cgroup against /proc/self/mountinfo) and cached by the
// caller. Readers take a root prefix so tests can point them at fake
// trees under testdata/.
package cgroup
