package kernel

import (
	"errors"
	"testing"
)

func TestTransitions(t *testing.T) {
	for _, tc := range []struct {
		from, to State
		ok       bool
	}{
		{Preparing, Creating, true},
		{Preparing, Pulling, true},
		{Pulling, Creating, true},
		{Creating, Running, true},
		{Running, Restarting, true},
		{Restarting, Running, true},
		{Running, Terminating, true},
		{Terminating, Terminated, true},
		{Running, Terminated, true},
		{Terminated, Running, false},
		{Terminating, Running, false},
		{Running, Creating, false},
		{Preparing, Running, false},
		{Terminated, Terminated, false},
	} {
		m := NewMachine("k", tc.from)
		err := m.Transition(tc.to, "test")
		if (err == nil) != tc.ok {
			t.Errorf("%s -> %s: err=%v, want ok=%v", tc.from, tc.to, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrIllegalTransition) {
			t.Errorf("error does not wrap ErrIllegalTransition: %v", err)
		}
		if err != nil && m.State() != tc.from {
			t.Errorf("state changed on illegal edge")
		}
	}
}

func TestDoneAndTermination(t *testing.T) {
	m := NewMachine("k", Running)
	done := m.Done()
	m.SetTermination(Termination{Reason: "user-requested"})
	m.SetTermination(Termination{Reason: "self-terminated", ExitCode: 137, OOMKilled: true})
	_ = m.Transition(Terminating, "destroy")
	select {
	case <-done:
		t.Fatal("done before terminated")
	default:
	}
	_ = m.Transition(Terminated, "clean")
	<-done
	term, _ := m.Termination()
	if term.Reason != "user-requested" || term.ExitCode != 137 || !term.OOMKilled {
		t.Fatalf("got %+v", term)
	}
	if h := m.History(); len(h) != 3 || h[2].To != Terminated {
		t.Fatalf("history %+v", h)
	}
}

func TestClassifyExit(t *testing.T) {
	if c := ClassifyExit(137, true); !c.OOMKilled || c.ShmExhausted {
		t.Fatalf("%+v", c)
	}
	if c := ClassifyExit(135, false); !c.ShmExhausted {
		t.Fatalf("%+v", c)
	}
	if c := ClassifyExit(0, false); c.OOMKilled || c.ShmExhausted {
		t.Fatalf("%+v", c)
	}
}
