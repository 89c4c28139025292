package consumer

import "testing"

func TestOffsetsNeverPassAnUnfinishedMessage(t *testing.T) {
	o := newOffsets()
	for off := int64(10); off < 15; off++ {
		o.start(0, off)
	}
	// 11..14 finish, 10 is still running (a slow PG call on another key).
	for off := int64(11); off < 15; off++ {
		o.finish(0, off)
	}
	if got := o.commitable(); got[0] != 10 {
		t.Fatalf("commit position with 10 unfinished = %v, want 10", got)
	}
	o.committed(0, 10)
	if got := o.commitable(); len(got) != 0 {
		t.Fatalf("position did not move, yet commitable = %v", got)
	}
	o.finish(0, 10)
	if got := o.commitable(); got[0] != 15 {
		t.Fatalf("all finished: position = %v, want 15", got)
	}
}

func TestOffsetsRedeliveryAfterRebalance(t *testing.T) {
	o := newOffsets()
	o.start(3, 7)
	o.start(3, 8)
	o.finish(3, 8)
	// The partition is handed out again from the committed offset: 7
	// arrives a second time while the first delivery still runs.
	o.start(3, 7)
	o.finish(3, 7)
	if got := o.commitable(); got[3] != 7 {
		t.Fatalf("one delivery of 7 still running: position = %v, want 7", got)
	}
	o.finish(3, 7)
	if got := o.commitable(); got[3] != 9 {
		t.Fatalf("position = %v, want 9", got)
	}
	if n := o.inFlight(); n != 0 {
		t.Fatalf("in flight = %d, want 0", n)
	}
}

func TestOffsetsArePerPartition(t *testing.T) {
	o := newOffsets()
	o.start(0, 5)
	o.start(1, 100)
	o.finish(1, 100)
	got := o.commitable()
	if got[0] != 5 || got[1] != 101 {
		t.Fatalf("commitable = %v, want map[0:5 1:101]", got)
	}
}
