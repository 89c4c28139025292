package main

import "testing"

// The probe follows PAYFLOW_HTTP_ADDR as serve does, so an image whose
// payflow listens elsewhere than :8080 is not reported unhealthy.
func TestHealthURLFollowsTheListenAddress(t *testing.T) {
	for addr, want := range map[string]string{
		":8080":          "http://127.0.0.1:8080/healthz",
		":9000":          "http://127.0.0.1:9000/healthz",
		"0.0.0.0:9000":   "http://127.0.0.1:9000/healthz",
		"[::]:9000":      "http://127.0.0.1:9000/healthz",
		"10.0.0.5:8081":  "http://10.0.0.5:8081/healthz",
		"[::1]:8081":     "http://[::1]:8081/healthz",
		"localhost:8082": "http://localhost:8082/healthz",
	} {
		if got := healthURL(addr); got != want {
			t.Errorf("healthURL(%q) = %q, want %q", addr, got, want)
		}
	}
}
