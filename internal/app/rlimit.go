package app

import (
	"log/slog"

	"golang.org/x/sys/unix"
)

// minOpenFiles is the open-files soft limit below which the agent warns:
// each kernel holds descriptors in the agent for as long as it lives (its
// runner's sockets, the engine's event and attach streams, stats files),
// and a full node runs hundreds of kernels. Debian's default soft limit
// of 1024 runs out long before.
const minOpenFiles = 65536

// raiseOpenFiles lifts the open-files soft limit to the hard limit (Go's
// runtime does so for its own process since 1.19; done again here so that
// the figure is logged, and so that a failure is said rather than found
// later as EMFILE in the middle of a creation) and warns when even the
// hard limit is below minOpenFiles.
func raiseOpenFiles(log *slog.Logger) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("cannot read the open-files limit", "error", err)
		return
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
			log.Warn("cannot raise the open-files soft limit to the hard limit", "soft", lim.Cur, "hard", lim.Max, "error", err)
		} else {
			lim = want
		}
	}
	if lim.Cur < minOpenFiles {
		log.Warn("the open-files limit is low for a node with many kernels: raise the hard limit (systemd LimitNOFILE=, ulimit -Hn)", "soft", lim.Cur, "hard", lim.Max, "recommended", minOpenFiles)
		return
	}
	log.Info("open-files limit", "soft", lim.Cur, "hard", lim.Max)
}
