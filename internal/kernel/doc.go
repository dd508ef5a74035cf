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
// Odd cases, written down: the Docker "die" event and a DESTROY request can
// race; whichever arrives second finds the kernel TERMINATING or TERMINATED
// and the transition it asks for is refused, which callers treat as "done
// already". RESTARTING keeps the allocation and the scratch directory.
package kernel
