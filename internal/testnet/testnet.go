// Package testnet gives tests network faults that a real peer can cause
// and a loopback connection never does: a peer that goes silent without a
// word (a host gone, a NAT that forgot the connection).
package testnet

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Silencer forwards TCP to a server until it is silenced, and then passes
// nothing more while it holds every connection open. Connections opened
// after Silence(false) pass again; those it swallowed stay stuck.
type Silencer struct {
	ln     net.Listener
	silent atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

// NewSilencer listens on a loopback port and forwards to target; it is
// closed when the test ends.
func NewSilencer(t *testing.T, target string) *Silencer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Silencer{ln: ln}
	t.Cleanup(s.Close)
	// pipe copies src to dst; one side's end is the other's, as on a real hop.
	pipe := func(dst, src net.Conn, stuck *atomic.Bool) {
		defer dst.Close()
		defer src.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if err != nil {
				return
			}
			if s.silent.Load() {
				stuck.Store(true)
			}
			if stuck.Load() {
				continue // swallowed: nothing reaches the other side
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			s.mu.Lock()
			s.conns = append(s.conns, c, u)
			s.mu.Unlock()
			stuck := &atomic.Bool{}
			go pipe(u, c, stuck)
			go pipe(c, u, stuck)
		}
	}()
	return s
}

// Close stops listening and closes every connection, stuck or not: a
// client waiting on one sees it end.
func (s *Silencer) Close() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// Addr is the address to connect to instead of the target's.
func (s *Silencer) Addr() string { return s.ln.Addr().String() }

// Silence makes every connection open now, and every one opened while it
// is on, swallow what it carries from then on (true); off, new
// connections pass again.
func (s *Silencer) Silence(on bool) { s.silent.Store(on) }
