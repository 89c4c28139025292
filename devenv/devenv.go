// Package devenv owns the no-setup environment of `payflow dev`, `demo`,
// `bench` and the tests: an in-process Kafka-protocol broker (kfake: real
// wire protocol, consumer groups and commits, reachable by kcat), and a
// Postgres server: DATABASE_URL when given, else a container when a Docker
// engine answers, else a throwaway server started from the installed
// binaries.
package devenv

import (
	"fmt"
	"net"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka is an embedded broker.
type Kafka struct {
	c    *kfake.Cluster
	addr string
	once sync.Once
}

// StartKafka starts a one-broker cluster listening on addr (host:port;
// port 0 or an empty addr picks a free loopback port).
//
// Topics are not created here and auto-creation stays off, as on a
// production cluster: payflow creates its topics itself through kafka-go,
// and a code path that forgets to would otherwise pass in dev and fail in
// production.
//
// opts are added to the cluster's options: kfake.EnableSASL,
// kfake.Superuser and kfake.TLS give a broker that requires what a secured
// production cluster does.
func StartKafka(addr string, opts ...kfake.Opt) (*Kafka, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	c, err := kfake.NewCluster(append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			ln, err := net.Listen(network, addr)
			if err != nil {
				return nil, err
			}
			return advertise(ln), nil
		}),
		// Kafka's own default, so that a message too large for a real
		// broker is too large here as well.
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "1048588"}),
	}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("devenv: start kafka on %s: %w", addr, err)
	}
	return &Kafka{c: c, addr: c.ListenAddrs()[0]}, nil
}

// Addr is the bootstrap address, as clients outside the process see it.
// It is also the address the broker advertises in metadata, so a client
// that bootstraps from it is sent back to the same listener.
func (k *Kafka) Addr() string { return k.addr }

// Close stops the broker. It is safe to call more than once.
func (k *Kafka) Close() { k.once.Do(k.c.Close) }

// Cluster exposes the broker for tests that inject faults.
func (k *Kafka) Cluster() *kfake.Cluster { return k.c }

// advertisedListener reports a dialable address for a listener bound to
// the unspecified address: kfake advertises whatever Addr returns, and
// "0.0.0.0" or "[::]" in metadata would send clients nowhere useful.
type advertisedListener struct {
	net.Listener
	addr net.Addr
}

func (l advertisedListener) Addr() net.Addr { return l.addr }

func advertise(ln net.Listener) net.Listener {
	a, ok := ln.Addr().(*net.TCPAddr)
	if !ok || !a.IP.IsUnspecified() {
		return ln
	}
	// Loopback is what every local client (kcat, the demo, tests) can
	// reach; a remote client needs an explicit host in --kafka-addr.
	return advertisedListener{Listener: ln, addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: a.Port}}
}
