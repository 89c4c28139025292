package kafkaconf_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/payflow/payflow/devenv"
	"github.com/payflow/payflow/kafkaconf"
)

// Every mistake is reported before payflow connects, naming what to fix.
func TestSecurityValidate(t *testing.T) {
	dir := t.TempDir()
	files, err := devenv.WriteTLSFiles(dir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	cases := []struct {
		name string
		s    kafkaconf.Security
		want string // "" accepts
	}{
		{"plaintext", kafkaconf.Security{}, ""},
		{"tls with system roots", kafkaconf.Security{TLS: true}, ""},
		{"tls with a CA", kafkaconf.Security{TLS: true, TLSCA: files.CA, TLSServerName: "broker"}, ""},
		{"mutual tls", kafkaconf.Security{TLS: true, TLSCA: files.CA, TLSCert: files.ClientCert, TLSKey: files.ClientKey}, ""},
		{"plain", kafkaconf.Security{SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: "p"}, ""},
		{"scram-sha-256, any case", kafkaconf.Security{SASLMechanism: "scram-sha-256", SASLUsername: "u", SASLPassword: "p"}, ""},
		{"scram-sha-512 over tls", kafkaconf.Security{TLS: true, SASLMechanism: "SCRAM-SHA-512", SASLUsername: "u", SASLPassword: "p"}, ""},

		{"CA missing", kafkaconf.Security{TLS: true, TLSCA: missing}, "PAYFLOW_KAFKA_TLS_CA: open " + missing},
		{"CA not PEM", kafkaconf.Security{TLS: true, TLSCA: notPEM}, "no PEM certificate"},
		{"cert without key", kafkaconf.Security{TLS: true, TLSCert: files.ClientCert}, "both PAYFLOW_KAFKA_TLS_CERT and PAYFLOW_KAFKA_TLS_KEY"},
		{"key without cert", kafkaconf.Security{TLS: true, TLSKey: files.ClientKey}, "both PAYFLOW_KAFKA_TLS_CERT and PAYFLOW_KAFKA_TLS_KEY"},
		{"cert missing", kafkaconf.Security{TLS: true, TLSCert: missing, TLSKey: files.ClientKey}, "PAYFLOW_KAFKA_TLS_CERT: open"},
		{"key missing", kafkaconf.Security{TLS: true, TLSCert: files.ClientCert, TLSKey: missing}, "PAYFLOW_KAFKA_TLS_KEY: open"},
		{"key of another cert", kafkaconf.Security{TLS: true, TLSCert: files.ClientCert, TLSKey: files.ServerKey}, "private key does not match"},
		{"CA without TLS", kafkaconf.Security{TLSCA: files.CA}, "PAYFLOW_KAFKA_TLS_CA is set but TLS is off"},
		{"server name without TLS", kafkaconf.Security{TLSServerName: "b"}, "PAYFLOW_KAFKA_TLS_SERVER_NAME is set but TLS is off"},
		{"unknown mechanism", kafkaconf.Security{SASLMechanism: "GSSAPI", SASLUsername: "u", SASLPassword: "p"}, `unknown PAYFLOW_KAFKA_SASL_MECHANISM "GSSAPI"`},
		{"no username", kafkaconf.Security{SASLMechanism: "PLAIN", SASLPassword: "p"}, "needs PAYFLOW_KAFKA_SASL_USERNAME"},
		{"no password", kafkaconf.Security{SASLMechanism: "SCRAM-SHA-512", SASLUsername: "u"}, "needs PAYFLOW_KAFKA_SASL_PASSWORD"},
		{"credentials without mechanism", kafkaconf.Security{SASLUsername: "u", SASLPassword: "p"}, "set PAYFLOW_KAFKA_SASL_MECHANISM"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

// The password shows nowhere a Security is printed.
func TestSecurityHidesThePassword(t *testing.T) {
	s := kafkaconf.Security{TLS: true, SASLMechanism: "PLAIN", SASLUsername: "payflow", SASLPassword: "hunter2-secret"}
	for _, out := range []string{s.String(), fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s)} {
		if strings.Contains(out, "hunter2") {
			t.Fatalf("password printed: %s", out)
		}
		if !strings.Contains(out, "payflow") || !strings.Contains(out, "PLAIN") {
			t.Fatalf("description lacks user or mechanism: %s", out)
		}
	}
	if err := (kafkaconf.Security{SASLMechanism: "NOPE", SASLUsername: "u", SASLPassword: "hunter2-secret"}).Validate(); strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("password in error: %v", err)
	}
}

// Check connects with the configured security; a refusal names the broker
// and is told apart from an unreachable one.
func TestCheckAgainstSecuredBroker(t *testing.T) {
	files, err := devenv.WriteTLSFiles(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	k, err := devenv.StartKafka("", kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "payflow", "s3cret"), kfake.TLS(files.Server(false)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	check := func(s kafkaconf.Security) error {
		d, err := s.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		return d.Check(ctx, []string{k.Addr()})
	}
	good := kafkaconf.Security{TLS: true, TLSCA: files.CA, SASLMechanism: "SCRAM-SHA-512", SASLUsername: "payflow", SASLPassword: "s3cret"}
	if err := check(good); err != nil {
		t.Fatal(err)
	}
	wrongPass := good
	wrongPass.SASLPassword = "not-the-password"
	err = check(wrongPass)
	if err == nil || !errors.Is(err, kafkaconf.ErrRefused) || !strings.Contains(err.Error(), k.Addr()) || !strings.Contains(err.Error(), "SASL authentication failed") {
		t.Fatalf("wrong password: %v", err)
	}
	if strings.Contains(err.Error(), "not-the-password") {
		t.Fatalf("password in error: %v", err)
	}
	noCA := good
	noCA.TLSCA = ""
	err = check(noCA)
	if err == nil || !errors.Is(err, kafkaconf.ErrRefused) || !strings.Contains(err.Error(), k.Addr()) || !strings.Contains(err.Error(), "TLS handshake failed") {
		t.Fatalf("unknown CA: %v", err)
	}
	wrongName := good
	wrongName.TLSServerName = "elsewhere.example"
	if err := check(wrongName); err == nil || !errors.Is(err, kafkaconf.ErrRefused) {
		t.Fatalf("wrong server name: %v", err)
	}
	// Nothing listens: not a refusal, a broker that may come back.
	d, _ := good.Dial()
	err = d.Check(ctx, []string{"127.0.0.1:1"})
	if err == nil || errors.Is(err, kafkaconf.ErrRefused) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("unreachable: %v", err)
	}
}
