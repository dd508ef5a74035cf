package ports

import (
	"errors"
	"strings"
	"testing"
)

func TestOverlapsEphemeral(t *testing.T) {
	lo, hi, err := EphemeralRange()
	if err != nil {
		t.Fatalf("no %s: %v", EphemeralRangeFile, err)
	}
	for _, tc := range []struct {
		first, last int
		want        bool
	}{
		{lo - 10, lo - 1, false},
		{hi + 1, hi + 10, false},
		{lo - 5, lo, true},
		{hi, hi + 5, true},
		{lo + 1, lo + 2, true},
		{lo - 5, hi + 5, true},
	} {
		if got, msg := OverlapsEphemeral(tc.first, tc.last); got != tc.want || (got && !strings.Contains(msg, "ephemeral")) {
			t.Errorf("%d-%d: %v %q", tc.first, tc.last, got, msg)
		}
	}
}

// The exhaustion error says how many ports other processes hold, so that
// "5 free" never reads as a bug of the pool when the probe refused them.
func TestExhaustedCountsProbeRefusals(t *testing.T) {
	taken := map[int]bool{100: true, 101: true, 102: true}
	p := New(100, 104, Options{Probe: func(port int) bool { return !taken[port] }})
	_, err := p.Take(3)
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "3 are held by another process") {
		t.Fatalf("%v", err)
	}
	if got, err := p.Take(2); err != nil || got[0] != 103 || got[1] != 104 {
		t.Fatalf("%v %v", got, err)
	}
}
