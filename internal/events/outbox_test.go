package events

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestOutboxOrderAckReplay(t *testing.T) {
	dir := t.TempDir()
	o, err := OpenOutbox(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := o.Append(&Record{Name: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	recs, off := o.Peek(2)
	if len(recs) != 2 || recs[0].Name != "0" || recs[1].Name != "1" {
		t.Fatalf("peek %v", recs)
	}
	if err := o.Ack(off); err != nil {
		t.Fatal(err)
	}
	o.Close()
	// Reopen (as after a SIGKILL): the undelivered three come back, in order.
	o, err = OpenOutbox(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	recs, off = o.Peek(10)
	if len(recs) != 3 || recs[0].Name != "2" || recs[2].Name != "4" {
		t.Fatalf("after reopen: %v", recs)
	}
	if err := o.Ack(off); err != nil {
		t.Fatal(err)
	}
	if o.Pending() != 0 {
		t.Fatal("pending after full ack")
	}
	if st, _ := os.Stat(filepath.Join(dir, "events.log")); st.Size() != 0 {
		t.Fatal("log not truncated after everything was delivered")
	}
}

func TestOutboxTornTailAndBound(t *testing.T) {
	dir := t.TempDir()
	o, _ := OpenOutbox(dir, 1<<20)
	_, _ = o.Append(&Record{Name: "a"})
	_, _ = o.Append(&Record{Name: "b"})
	o.Close()
	f, _ := os.OpenFile(filepath.Join(dir, "events.log"), os.O_WRONLY|os.O_APPEND, 0)
	_, _ = f.Write([]byte{50, 0, 0, 0, 1, 2})
	f.Close()
	o, err := OpenOutbox(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := o.Peek(10)
	if len(recs) != 2 {
		t.Fatalf("torn tail not cut: %d records", len(recs))
	}
	_, _ = o.Append(&Record{Name: "c"})
	if recs, _ := o.Peek(10); len(recs) != 3 || recs[2].Name != "c" {
		t.Fatalf("append after cut: %v", recs)
	}
	o.Close()
	small, _ := OpenOutbox(t.TempDir(), 300)
	for i := 0; i < 10; i++ {
		_, _ = small.Append(&Record{Name: fmt.Sprint(i)})
	}
	recs, _ = small.Peek(100)
	if small.Dropped() == 0 || recs[len(recs)-1].Name != "9" || small.Pending() > 300 {
		t.Fatalf("bound: dropped %d, pending %d, last %v", small.Dropped(), small.Pending(), recs[len(recs)-1])
	}
}
