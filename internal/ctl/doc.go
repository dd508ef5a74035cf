// Package ctl is `bai-agent ctl`: a client of the agent's own Callosum RPC
// that acts as a minimal manager for one node (ping, info, create, ls,
// logs, restart, destroy, cp, images). Output is a table for people and
// JSON with --json for scripts.
//
// Exit codes: 0 success; 1 the agent refused or failed the request; 2 bad
// usage or arguments; 3 the agent cannot be reached (no PONG).
package ctl
