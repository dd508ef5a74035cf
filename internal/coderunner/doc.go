// Package coderunner is the agent's side of the agent↔runner protocol: a
// PUSH socket to the kernel's request port and a PULL socket from its
// output port (both through 127.0.0.1 and the host ports Docker bound),
// owned by one goroutine. It matches replies to requests (status,
// completion, apps, services) and hands output records to the current
// run; runs are handed over first come, first served, as the Python
// agent's output queues do, and results are shaped exactly as its
// execute() returns them.
package coderunner
