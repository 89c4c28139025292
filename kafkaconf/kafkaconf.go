// Package kafkaconf holds how payflow reaches its Kafka brokers: the
// connection's security (TLS, SASL) and the names of its topics. Both the
// consumer and the producer build their kafka-go clients from it, so one
// validated configuration covers every connection payflow opens (the
// reader, the writer, topic creation and the readiness ping).
package kafkaconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// The SASL mechanisms payflow supports.
const (
	PLAIN       = "PLAIN"
	SCRAMSHA256 = "SCRAM-SHA-256"
	SCRAMSHA512 = "SCRAM-SHA-512"
)

// Security is the connection's protection. The zero value is plaintext
// without authentication, as before these settings existed.
type Security struct {
	// TLS encrypts every connection and verifies the brokers' certificates.
	TLS bool
	// TLSCA is a PEM file of the CAs that sign the brokers' certificates;
	// empty: the system's roots.
	TLSCA string
	// TLSCert and TLSKey are PEM files of a client certificate and its key,
	// for brokers that authenticate clients by certificate (mutual TLS).
	TLSCert, TLSKey string
	// TLSServerName is the name checked in the brokers' certificates;
	// empty: the host each connection dials.
	TLSServerName string

	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no
	// SASL.
	SASLMechanism string
	SASLUsername  string
	SASLPassword  string
}

// String describes s without its password, for logs.
func (s Security) String() string {
	var parts []string
	if s.TLS {
		t := "tls"
		if s.TLSCA != "" {
			t += " ca=" + s.TLSCA
		}
		if s.TLSCert != "" {
			t += " cert=" + s.TLSCert
		}
		if s.TLSServerName != "" {
			t += " server_name=" + s.TLSServerName
		}
		parts = append(parts, t)
	} else {
		parts = append(parts, "plaintext")
	}
	if s.SASLMechanism != "" {
		parts = append(parts, "sasl "+strings.ToUpper(s.SASLMechanism)+" user="+s.SASLUsername)
	}
	return strings.Join(parts, ", ")
}

// GoString keeps the password out of %#v as well.
func (s Security) GoString() string { return "kafkaconf.Security{" + s.String() + "}" }

// SASLWithoutTLS reports a configuration that sends SASL credentials (and
// everything else) unencrypted: allowed, for networks that protect it
// otherwise, but worth a warning.
func (s Security) SASLWithoutTLS() bool { return s.SASLMechanism != "" && !s.TLS }

// Validate reports the first thing wrong with s, reading the files it
// names. The errors name the environment variable to fix.
func (s Security) Validate() error {
	_, err := s.Dial()
	return err
}

// Dial validates s and builds what connections need: the TLS configuration
// (files read once, here) and the SASL mechanism.
func (s Security) Dial() (*Dial, error) {
	d := &Dial{}
	var err error
	if d.TLS, err = s.tlsConfig(); err != nil {
		return nil, err
	}
	if d.SASL, err = s.mechanism(); err != nil {
		return nil, err
	}
	if d.TLS != nil || d.SASL != nil {
		d.transport = d.NewTransport()
	}
	return d, nil
}

func (s Security) tlsConfig() (*tls.Config, error) {
	if !s.TLS {
		for _, f := range []struct{ env, v string }{
			{"PAYFLOW_KAFKA_TLS_CA", s.TLSCA}, {"PAYFLOW_KAFKA_TLS_CERT", s.TLSCert},
			{"PAYFLOW_KAFKA_TLS_KEY", s.TLSKey}, {"PAYFLOW_KAFKA_TLS_SERVER_NAME", s.TLSServerName},
		} {
			if f.v != "" {
				return nil, fmt.Errorf("kafka: %s is set but TLS is off: set PAYFLOW_KAFKA_TLS=on (--kafka-tls) or unset it", f.env)
			}
		}
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.TLSServerName}
	if s.TLSCA != "" {
		pem, err := readFile("PAYFLOW_KAFKA_TLS_CA", s.TLSCA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka: PAYFLOW_KAFKA_TLS_CA %s: no PEM certificate in it", s.TLSCA)
		}
	}
	switch {
	case s.TLSCert == "" && s.TLSKey == "":
	case s.TLSCert == "" || s.TLSKey == "":
		return nil, errors.New("kafka: a client certificate needs both PAYFLOW_KAFKA_TLS_CERT and PAYFLOW_KAFKA_TLS_KEY")
	default:
		certPEM, err := readFile("PAYFLOW_KAFKA_TLS_CERT", s.TLSCert)
		if err != nil {
			return nil, err
		}
		keyPEM, err := readFile("PAYFLOW_KAFKA_TLS_KEY", s.TLSKey)
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			// The error of X509KeyPair never quotes the key.
			return nil, fmt.Errorf("kafka: PAYFLOW_KAFKA_TLS_CERT %s with PAYFLOW_KAFKA_TLS_KEY %s: %w", s.TLSCert, s.TLSKey, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func readFile(env, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kafka: %s: %w", env, err)
	}
	return b, nil
}

func (s Security) mechanism() (sasl.Mechanism, error) {
	mech := strings.ToUpper(strings.TrimSpace(s.SASLMechanism))
	if mech == "" {
		if s.SASLUsername != "" || s.SASLPassword != "" {
			return nil, errors.New("kafka: a SASL username or password is set but no mechanism: set PAYFLOW_KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
		}
		return nil, nil
	}
	if mech != PLAIN && mech != SCRAMSHA256 && mech != SCRAMSHA512 {
		return nil, fmt.Errorf("kafka: unknown PAYFLOW_KAFKA_SASL_MECHANISM %q: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.SASLMechanism)
	}
	if s.SASLUsername == "" {
		return nil, fmt.Errorf("kafka: SASL %s needs PAYFLOW_KAFKA_SASL_USERNAME", mech)
	}
	if s.SASLPassword == "" {
		return nil, fmt.Errorf("kafka: SASL %s needs PAYFLOW_KAFKA_SASL_PASSWORD", mech)
	}
	switch mech {
	case PLAIN:
		return plain.Mechanism{Username: s.SASLUsername, Password: s.SASLPassword}, nil
	case SCRAMSHA256:
		return scramMechanism(scram.SHA256, s.SASLUsername, s.SASLPassword)
	default:
		return scramMechanism(scram.SHA512, s.SASLUsername, s.SASLPassword)
	}
}

func scramMechanism(algo scram.Algorithm, user, pass string) (sasl.Mechanism, error) {
	m, err := scram.Mechanism(algo, user, pass)
	if err != nil {
		// Only a username or password that SASLprep rejects; neither is
		// quoted.
		return nil, fmt.Errorf("kafka: SASL %s: the username or password is not usable: %w", algo.Name(), err)
	}
	return m, nil
}

// Dial is a validated Security, ready for kafka-go. A nil *Dial, like the
// zero Security, connects in plaintext without authentication.
type Dial struct {
	TLS  *tls.Config
	SASL sasl.Mechanism

	transport *kafka.Transport // shared by admin calls; nil in plaintext
}

// Secured reports whether d adds anything to a plain connection.
func (d *Dial) Secured() bool { return d != nil && (d.TLS != nil || d.SASL != nil) }

// Dialer returns a dialer for kafka-go's Reader and Conn: kafka-go's
// default dialer, with d's TLS and SASL.
func (d *Dial) Dialer() *kafka.Dialer {
	if !d.Secured() {
		return kafka.DefaultDialer
	}
	return &kafka.Dialer{
		Timeout: 10 * time.Second, DualStack: true,
		TLS: d.TLS, SASLMechanism: d.SASL,
	}
}

// NewTransport returns a transport of its own (for a Writer, which closes
// its idle connections when it closes), or nil in plaintext: kafka-go then
// uses its default transport, as before.
func (d *Dial) NewTransport() *kafka.Transport {
	if !d.Secured() {
		return nil
	}
	return &kafka.Transport{
		Dial:        (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		DialTimeout: 5 * time.Second,
		TLS:         d.TLS,
		SASL:        d.SASL,
	}
}

// Transport returns the transport shared by short admin calls (metadata,
// topic creation, readiness), or nil in plaintext: kafka-go's default.
// Sharing it keeps a readiness probe from opening connections of its own
// every time.
func (d *Dial) Transport() kafka.RoundTripper {
	if !d.Secured() {
		return nil
	}
	return d.transport
}

// Close closes the shared transport's idle connections.
func (d *Dial) Close() {
	if d.Secured() && d.transport != nil {
		d.transport.CloseIdleConnections()
	}
}

// Check opens one connection to the first broker that answers, with d's TLS
// and SASL, and closes it. It returns an error naming each broker tried.
// errors.Is(err, ErrRefused) tells a broker that answered and refused the
// connection's TLS handshake or credentials, which waiting does not fix,
// from one that could not be reached.
func (d *Dial) Check(ctx context.Context, brokers []string) error {
	if len(brokers) == 0 {
		return errors.New("kafka: no brokers")
	}
	var errs []error
	for _, b := range brokers {
		conn, err := d.Dialer().DialContext(ctx, "tcp", b)
		if err == nil {
			conn.Close()
			return nil
		}
		errs = append(errs, BrokerError(b, err))
	}
	return errors.Join(errs...)
}

// ErrRefused marks an error of a broker that refused the connection's
// security: a failed TLS handshake or failed SASL authentication.
var ErrRefused = errors.New("connection refused by the broker's security")

// BrokerError names the broker (or brokers) an error came from and marks
// security refusals with ErrRefused, so the log says which address refused
// which credentials.
func BrokerError(addr string, err error) error {
	if err == nil {
		return nil
	}
	if Refused(err) {
		return &brokerError{addr: addr, err: err, refused: true}
	}
	return &brokerError{addr: addr, err: err}
}

type brokerError struct {
	addr    string
	err     error
	refused bool
}

func (e *brokerError) Error() string {
	if e.refused {
		return fmt.Sprintf("kafka %s: %s: %v", e.addr, refusal(e.err), e.err)
	}
	return fmt.Sprintf("kafka %s: %v", e.addr, e.err)
}

func (e *brokerError) Unwrap() []error {
	if e.refused {
		return []error{e.err, ErrRefused}
	}
	return []error{e.err}
}

// Refused reports an error of a broker refusing the connection's security.
func Refused(err error) bool {
	if errors.Is(err, ErrRefused) {
		return true
	}
	var (
		certErr  *tls.CertificateVerificationError
		headErr  tls.RecordHeaderError
		alertErr tls.AlertError
		unknown  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.Is(err, kafka.SASLAuthenticationFailed) ||
		errors.Is(err, kafka.UnsupportedSASLMechanism) ||
		errors.Is(err, kafka.IllegalSASLState) ||
		errors.As(err, &certErr) || errors.As(err, &headErr) || errors.As(err, &alertErr) ||
		errors.As(err, &unknown) || errors.As(err, &hostErr) || errors.As(err, &invalid)
}

func refusal(err error) string {
	switch {
	case errors.Is(err, kafka.SASLAuthenticationFailed):
		return "SASL authentication failed (check PAYFLOW_KAFKA_SASL_USERNAME, PAYFLOW_KAFKA_SASL_PASSWORD and PAYFLOW_KAFKA_SASL_MECHANISM)"
	case errors.Is(err, kafka.UnsupportedSASLMechanism):
		return "the broker does not offer this SASL mechanism (PAYFLOW_KAFKA_SASL_MECHANISM)"
	case errors.Is(err, kafka.IllegalSASLState):
		return "SASL handshake refused"
	default:
		return "TLS handshake failed (check PAYFLOW_KAFKA_TLS_CA, PAYFLOW_KAFKA_TLS_SERVER_NAME and whether the listener speaks TLS)"
	}
}
