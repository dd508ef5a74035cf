package krunner

import "golang.org/x/sys/unix"

// monotonic is CLOCK_MONOTONIC in seconds, as Python's time.monotonic()
// (what the reference runner reports as started_at).
func monotonic() float64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}
