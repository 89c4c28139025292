package consumer

import (
	"sync"
	"time"
)

// offsets tracks, per partition, which fetched offsets are still being
// handled, so that the committed offset never passes an unfinished message:
// messages finish out of order when different keys run concurrently, and a
// commit past an unfinished one would lose it on a crash.
type offsets struct {
	mu    sync.Mutex
	parts map[int]*partOffsets
}

type partOffsets struct {
	pending   map[int64]*delivery // offset → its deliveries still in flight (a rebalance can redeliver)
	next      int64               // one past the highest offset seen
	committed int64               // the last offset committed (the next to read)
}

// delivery counts the unfinished deliveries of one offset and remembers
// when the first of them was fetched.
type delivery struct {
	n     int
	since time.Time
}

func newOffsets() *offsets { return &offsets{parts: map[int]*partOffsets{}} }

func (o *offsets) start(partition int, offset int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.parts[partition]
	if p == nil {
		p = &partOffsets{pending: map[int64]*delivery{}, committed: -1}
		o.parts[partition] = p
	}
	d := p.pending[offset]
	if d == nil {
		d = &delivery{since: time.Now()}
		p.pending[offset] = d
	}
	d.n++
	if offset+1 > p.next {
		p.next = offset + 1
	}
}

func (o *offsets) finish(partition int, offset int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.parts[partition]
	if d := p.pending[offset]; d != nil {
		if d.n--; d.n <= 0 {
			delete(p.pending, offset)
		}
	}
}

// commitable returns, per partition, the offset to commit (the lowest
// unfinished offset, or one past the highest seen when none is unfinished)
// where it moved since the last commit.
func (o *offsets) commitable() map[int]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[int]int64{}
	for part, p := range o.parts {
		pos := p.next
		for off := range p.pending {
			if off < pos {
				pos = off
			}
		}
		if pos > p.committed {
			out[part] = pos
		}
	}
	return out
}

func (o *offsets) committed(partition int, pos int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if p := o.parts[partition]; p != nil && pos > p.committed {
		p.committed = pos
	}
}

// inFlight is the number of deliveries not yet finished.
func (o *offsets) inFlight() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, p := range o.parts {
		for _, d := range p.pending {
			n += d.n
		}
	}
	return n
}

// oldest is the age of the oldest unfinished delivery, 0 when none is.
func (o *offsets) oldest(now time.Time) time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	var first time.Time
	for _, p := range o.parts {
		for _, d := range p.pending {
			if first.IsZero() || d.since.Before(first) {
				first = d.since
			}
		}
	}
	if first.IsZero() {
		return 0
	}
	return now.Sub(first)
}
