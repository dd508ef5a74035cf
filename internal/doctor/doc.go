// Package doctor checks a host before the agent runs there and says what
// to fix, one line per check: the container engine and its version, the
// cgroup layout and controllers, what the scratch type needs, the host
// port range, the RPC port, the control plane (etcd, Redis, and the clock
// against Redis TIME), and the GPU driver library. It changes nothing.
package doctor
