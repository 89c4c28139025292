//go:build !production

package main

import "testing"

// The worker process serves its metrics where the benchmark reads them: the
// relay and the group commit run there, not in the benchmark's process.
func TestWorkerProcessServesMetrics(t *testing.T) {
	d := &devEnv{Kafka: "127.0.0.1:9092", DatabaseURL: "postgres://db", PGSim: "http://127.0.0.1:1"}
	serve := serveCmd()
	if err := serve.ParseFlags(workerProcessArgs(d, 512, "127.0.0.1:4242")[1:]); err != nil {
		t.Fatal(err)
	}
	fl := serve.Flags()
	for name, want := range map[string]string{"http": "true", "http-addr": "127.0.0.1:4242", "worker": "true", "relay": "true"} {
		if got := fl.Lookup(name).Value.String(); got != want {
			t.Errorf("--%s = %s, want %s", name, got, want)
		}
	}
}
