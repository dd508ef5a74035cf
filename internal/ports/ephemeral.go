package ports

import (
	"fmt"
	"os"
	"strings"
)

// EphemeralRangeFile is where Linux keeps the range it picks outgoing
// connections' local ports from.
const EphemeralRangeFile = "/proc/sys/net/ipv4/ip_local_port_range"

// EphemeralRange reads the host's ephemeral port range.
func EphemeralRange() (first, last int, err error) {
	b, err := os.ReadFile(EphemeralRangeFile)
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &first, &last); err != nil {
		return 0, 0, fmt.Errorf("%s: %q: %w", EphemeralRangeFile, b, err)
	}
	return first, last, nil
}

// OverlapsEphemeral reports whether [first, last] shares ports with the
// host's ephemeral range: any outgoing connection (to Redis, etcd,
// dockerd, a registry) may then hold a port the pool hands to a kernel,
// and the kernel's start fails with "address already in use".
func OverlapsEphemeral(first, last int) (bool, string) {
	lo, hi, err := EphemeralRange()
	if err != nil {
		return false, ""
	}
	if first <= hi && last >= lo {
		return true, fmt.Sprintf("port-range %d-%d overlaps the ephemeral range %d-%d (%s)", first, last, lo, hi, EphemeralRangeFile)
	}
	return false, ""
}
