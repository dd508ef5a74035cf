// Package ports is the host port pool for container service ports
// ([container] port-range, default 30000-31000).
//
// Ports are handed out FIFO so a just-released port is the last to be
// reused, and a released port also waits port-reuse-cooldown-sec before it
// can be taken again (a client may still be connected to the old kernel).
// Take is all-or-nothing: a request that cannot be filled returns every
// port it picked, which is what the Python agent got wrong (#6121).
package ports
