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

	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka is an embedded broker.
type Kafka struct {
	c *kfake.Cluster
}

// StartKafka starts a one-broker cluster listening on addr (host:port;
// port 0 or an empty addr picks a free loopback port). Topics are created by
// payflow itself through kafka-go, as against a real cluster.
func StartKafka(addr string) (*Kafka, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, addr) }),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "1048588"}),
	)
	if err != nil {
		return nil, fmt.Errorf("devenv: start kafka on %s: %w", addr, err)
	}
	return &Kafka{c: c}, nil
}

// Addr is the bootstrap address, as clients outside the process see it.
func (k *Kafka) Addr() string { return k.c.ListenAddrs()[0] }

// Close stops the broker.
func (k *Kafka) Close() { k.c.Close() }

// Cluster exposes the broker for tests that inject faults.
func (k *Kafka) Cluster() *kfake.Cluster { return k.c }
