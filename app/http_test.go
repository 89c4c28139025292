package app

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/payflow/payflow/api"
	"github.com/payflow/payflow/stdwebhook"
	"github.com/payflow/payflow/webhook"
)

// testTimeouts are short, so that a client the server fails to cut off
// shows up as a client that waited for giveUp.
var testTimeouts = httpTimeouts{
	ReadHeader: 300 * time.Millisecond,
	Read:       500 * time.Millisecond,
	Handler:    500 * time.Millisecond,
	Write:      2 * time.Second,
	Idle:       500 * time.Millisecond,
}

// giveUp is how long a test client waits for the server to end an
// exchange: far beyond every limit in testTimeouts.
const giveUp = 15 * time.Second

func startHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(h, testTimeouts)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// exchange sends head (a request line, headers and perhaps part of a body)
// and then, if trickle, one more body byte every 50 ms for as long as the
// connection takes them. It returns what the server sent until it closed
// the connection, and fails the test if the server did not end the
// exchange before giveUp.
func exchange(t *testing.T, addr, head string, trickle bool) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	if trickle {
		go func() {
			for {
				time.Sleep(50 * time.Millisecond)
				if _, err := conn.Write([]byte("x")); err != nil {
					return
				}
			}
		}()
	}
	_ = conn.SetReadDeadline(time.Now().Add(giveUp))
	got, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server held the connection for %s; it sent %q", giveUp, got)
	}
	return string(got)
}

func post(path, extraHeaders string, contentLength int, bodyStart string) string {
	return "POST " + path + " HTTP/1.1\r\nHost: payflow\r\nContent-Type: application/json\r\n" + extraHeaders +
		"Content-Length: " + strconv.Itoa(contentLength) + "\r\n\r\n" + bodyStart
}

// A client that sends its headers and then stalls or trickles the body
// must not hold a webhook or API handler (and its connection) forever.
func TestSlowClientsAreCutOff(t *testing.T) {
	secrets, err := stdwebhook.ParseSecrets("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0")
	if err != nil {
		t.Fatal(err)
	}
	h := api.New(api.Config{
		PlatformToken: "platform-token",
		Webhooks:      &webhook.Receiver{Verifiers: map[string]webhook.Verifier{"sim": &stdwebhook.Verifier{Secrets: secrets}}},
	})
	addr := startHTTP(t, h)
	const auth = "Authorization: Bearer platform-token\r\n"
	for _, c := range []struct {
		name, head string
		trickle    bool
	}{
		{"webhook body stalls", post("/webhooks/pg/sim", "", 500, `{"bill_id":`), false},
		{"webhook body trickles", post("/webhooks/pg/sim", "", 60000, `{"bill_id":"`), true},
		{"API body stalls", post("/v1/members/m1/payment-methods", auth, 500, `{"billing_key":`), false},
		{"API body trickles", post("/v1/members/m1/payment-methods", auth, 60000, `{"billing_key":"`), true},
		{"headers stall", "POST /webhooks/pg/sim HTTP/1.1\r\nHost: payflow\r\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := exchange(t, addr, c.head, c.trickle)
			if strings.HasPrefix(got, "HTTP/1.1 2") {
				t.Fatalf("an unfinished body was accepted: %q", got)
			}
		})
	}
}

// A handler that waits on its request's context gets a deadline.
func TestHandlersHaveADeadline(t *testing.T) {
	addr := startHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Context().Deadline(); !ok {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		<-r.Context().Done()
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	got := exchange(t, addr, "GET /slow HTTP/1.1\r\nHost: payflow\r\nConnection: close\r\n\r\n", false)
	if !strings.HasPrefix(got, "HTTP/1.1 503") {
		t.Fatalf("answer %q, want the handler's 503 after its deadline", got)
	}
}

// An idle keep-alive connection is closed.
func TestIdleConnectionsAreClosed(t *testing.T) {
	addr := startHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	got := exchange(t, addr, "GET /healthz HTTP/1.1\r\nHost: payflow\r\n\r\n", false)
	if !strings.HasPrefix(got, "HTTP/1.1 204") {
		t.Fatalf("answer %q", got)
	}
}
