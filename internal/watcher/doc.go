// Package watcher is "bai-agent watcher": the separate process the
// manager calls on port 6009 to see and control the agent of a node and
// its host mounts, with the Python watcher's HTTP API (GET /,
// /soft-reset, /hard-reset, /shutdown, /agent/start|stop|restart,
// /mounts, /fstab), its X-BackendAI-Watcher-Token check (compared in
// constant time) and its Server header.
//
// It controls the agent through a Controller: Systemd runs systemctl on
// the agent's unit, as upstream; Supervisor runs the agent as the
// watcher's child and restarts it with backoff when it dies, for hosts
// without systemd (and for the tests here). Mounts go through mount(2)
// directly, and fstab edits are written to a temporary file and renamed
// over the original after a backup copy, so a crash never leaves a
// half-written fstab.
package watcher
