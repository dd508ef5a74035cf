package ports

import (
	"errors"
	"testing"
	"time"
)

func TestTakeReleaseFIFOAndCooldown(t *testing.T) {
	now := time.Unix(1000, 0)
	p := New(100, 103, Options{Cooldown: time.Minute, Now: func() time.Time { return now }})
	a, err := p.Take(2)
	if err != nil || a[0] != 100 || a[1] != 101 {
		t.Fatalf("got %v %v", a, err)
	}
	p.Release(100)
	b, err := p.Take(2)
	if err != nil || b[0] != 102 || b[1] != 103 {
		t.Fatalf("got %v %v", b, err)
	}
	// 100 is free but cooling down.
	if _, err := p.Take(1); !errors.Is(err, ErrExhausted) {
		t.Fatalf("cooldown ignored: %v", err)
	}
	if got, err := p.TakeNoCooldown(1); err != nil || got[0] != 100 {
		t.Fatalf("no-cooldown take: %v %v", got, err)
	}
	p.Release(100)
	now = now.Add(2 * time.Minute)
	if got, err := p.Take(1); err != nil || got[0] != 100 {
		t.Fatalf("after cooldown: %v %v", got, err)
	}
}

func TestTakeAllOrNothing(t *testing.T) {
	p := New(100, 102, Options{})
	if _, err := p.Take(4); !errors.Is(err, ErrExhausted) {
		t.Fatal(err)
	}
	if p.InUse() != 0 {
		t.Fatal("failed take leaked ports")
	}
	got, err := p.Take(3)
	if err != nil || len(got) != 3 {
		t.Fatal(got, err)
	}
}

func TestDiscard(t *testing.T) {
	p := New(100, 103, Options{})
	if c := p.Discard(101, 500); len(c) != 1 || c[0] != 500 {
		t.Fatalf("conflicts %v", c)
	}
	got, _ := p.Take(3)
	for _, port := range got {
		if port == 101 {
			t.Fatal("discarded port handed out")
		}
	}
	if !p.IsUsed(101) {
		t.Fatal("101 not marked used")
	}
}
