package app

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/outbox"
)

// held is a Publisher that holds every publication until released.
type held struct {
	mu      sync.Mutex
	got     []outbox.Message
	started chan struct{}
	release chan struct{}
}

func (h *held) Publish(ctx context.Context, msgs []outbox.Message) error {
	select {
	case h.started <- struct{}{}:
	default:
	}
	select {
	case <-h.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, msgs...)
	return nil
}

func (h *held) count() int { h.mu.Lock(); defer h.mu.Unlock(); return len(h.got) }

// A payflow whose relay stands by publishes nothing when it stops: the
// leader, in another process, is publishing those rows. (The last pass
// at shutdown ran after every relay, leader or not, and sent the rows the
// leader had in flight a second time at every rolling deploy.)
func TestAStandbyRelayPublishesNothingWhenItStops(t *testing.T) {
	ctx := context.Background()
	st := testdb.New(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	leaderPub := &held{started: make(chan struct{}, 1), release: make(chan struct{})}
	leader := &outbox.Relay{Pool: st.Pool, Publisher: leaderPub, PollInterval: 20 * time.Millisecond, Logger: quiet}
	lctx, stopLeader := context.WithCancel(ctx)
	leaderDone := make(chan struct{})
	go func() { defer close(leaderDone); _ = leader.Run(lctx) }()
	defer func() { close(leaderPub.release); stopLeader(); <-leaderDone }()
	for deadline := time.Now().Add(10 * time.Second); !leader.Leading(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the leader never took the lock")
		}
	}
	if err := outbox.Insert(ctx, st.Pool, outbox.Message{EventID: events.ID("standby"), Topic: events.TopicEvents, Key: []byte("c"), Value: []byte("r")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-leaderPub.started: // the leader is publishing the row
	case <-time.After(10 * time.Second):
		t.Fatal("the leader never published")
	}

	standbyPub := &held{started: make(chan struct{}, 1), release: make(chan struct{})}
	close(standbyPub.release) // a standby that did publish would not block
	standby := &outbox.Relay{Pool: st.Pool, Publisher: standbyPub, PollInterval: 20 * time.Millisecond, Logger: quiet}
	sctx, stopStandby := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relayComponent(standby).run(sctx) }()
	time.Sleep(100 * time.Millisecond) // the standby finds the lock taken
	stopStandby()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := standbyPub.count(); n != 0 {
		t.Fatalf("the standby published %d rows when it stopped, while the leader held the lock", n)
	}
}
