// Package kernel is the per-kernel state machine. It does no I/O.
//
//	    +-----------+
//	    | PREPARING |---------------------------+
//	    +-----------+                           |
//	      |       |                             |
//	      v       v                             |
//	+---------+  +----------+                   |
//	| PULLING |->| CREATING |-------------------+
//	+---------+  +----------+                   |
//	                |                           v
//	                v                    +-------------+    +------------+
//	          +---------+  restart       | TERMINATING |--->| TERMINATED |
//	          | RUNNING |--------------->+-------------+    +------------+
//	          +---------+<--+                 ^
//	            |  ^        |                 |
//	            v  |        |                 |
//	         +------------+ |                 |
//	         | RESTARTING |-+-----------------+
//	         +------------+
//
// Every state may also go straight to TERMINATED (a container that was
// already gone, a failed creation that left nothing behind). TERMINATED is
// final. The only way to change state is Kernel.Transition, which checks
// the edge, records the time and reason, and returns an error for an
// illegal edge instead of panicking.
//
// Who calls Transition: in the agent, only a kernel's owner goroutine
// (internal/agent/owner.go), which takes create, destroy, restart, exit
// and sync messages from its inbox one at a time; so a "die" event and a
// DESTROY never interleave: whichever is handled second finds the kernel
// TERMINATED (or its owner gone) and does nothing. An exit names its
// container: one about a container a restart replaced is dropped.
// RESTARTING keeps the allocation and the scratch directory.
package kernel
