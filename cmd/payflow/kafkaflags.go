package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/payflow/payflow/kafkaconf"
)

// kafkaFlags are the Kafka connection settings of the commands that talk to
// the brokers: the environment gives them, flags override it. The SASL
// password comes from the environment only, so it shows neither in --help
// nor in the process list.
type kafkaFlags struct {
	brokers string
	sec     kafkaconf.Security
	tlsErr  error // PAYFLOW_KAFKA_TLS not understood
	topics  kafkaconf.Topics
}

func addKafkaFlags(fl *pflag.FlagSet, k *kafkaFlags) {
	fl.StringVar(&k.brokers, "brokers", os.Getenv("PAYFLOW_KAFKA_BROKERS"), "Kafka bootstrap brokers, comma separated (PAYFLOW_KAFKA_BROKERS)")
	addKafkaConnFlags(fl, k)
}

// kafkaConnFlags names the flags addKafkaConnFlags adds.
var kafkaConnFlags = []string{"kafka-tls", "kafka-tls-ca", "kafka-tls-cert", "kafka-tls-key", "kafka-tls-server-name",
	"kafka-sasl-mechanism", "kafka-sasl-username", "topic-requests", "topic-events", "topic-dlq"}

// addKafkaConnFlags adds the TLS, SASL and topic flags, for a command
// that names its brokers otherwise.
func addKafkaConnFlags(fl *pflag.FlagSet, k *kafkaFlags) {
	var tlsOn bool
	tlsOn, k.tlsErr = envBool("PAYFLOW_KAFKA_TLS")
	fl.BoolVar(&k.sec.TLS, "kafka-tls", tlsOn, "connect to Kafka with TLS (PAYFLOW_KAFKA_TLS=on|off)")
	fl.StringVar(&k.sec.TLSCA, "kafka-tls-ca", os.Getenv("PAYFLOW_KAFKA_TLS_CA"), "PEM file of the CAs that sign the brokers' certificates; empty: the system's (PAYFLOW_KAFKA_TLS_CA)")
	fl.StringVar(&k.sec.TLSCert, "kafka-tls-cert", os.Getenv("PAYFLOW_KAFKA_TLS_CERT"), "PEM file of a client certificate, for mutual TLS (PAYFLOW_KAFKA_TLS_CERT)")
	fl.StringVar(&k.sec.TLSKey, "kafka-tls-key", os.Getenv("PAYFLOW_KAFKA_TLS_KEY"), "PEM file of the client certificate's key (PAYFLOW_KAFKA_TLS_KEY)")
	fl.StringVar(&k.sec.TLSServerName, "kafka-tls-server-name", os.Getenv("PAYFLOW_KAFKA_TLS_SERVER_NAME"), "name to verify in the brokers' certificates; empty: the host dialled (PAYFLOW_KAFKA_TLS_SERVER_NAME)")
	fl.StringVar(&k.sec.SASLMechanism, "kafka-sasl-mechanism", os.Getenv("PAYFLOW_KAFKA_SASL_MECHANISM"), "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL (PAYFLOW_KAFKA_SASL_MECHANISM; the password only from PAYFLOW_KAFKA_SASL_PASSWORD)")
	fl.StringVar(&k.sec.SASLUsername, "kafka-sasl-username", os.Getenv("PAYFLOW_KAFKA_SASL_USERNAME"), "SASL username (PAYFLOW_KAFKA_SASL_USERNAME)")
	d := kafkaconf.DefaultTopics()
	fl.StringVar(&k.topics.Requests, "topic-requests", env("PAYFLOW_TOPIC_REQUESTS", d.Requests), "topic of payment requests (PAYFLOW_TOPIC_REQUESTS)")
	fl.StringVar(&k.topics.Events, "topic-events", env("PAYFLOW_TOPIC_EVENTS", d.Events), "topic of result events (PAYFLOW_TOPIC_EVENTS)")
	fl.StringVar(&k.topics.DLQ, "topic-dlq", env("PAYFLOW_TOPIC_DLQ", d.DLQ), "dead-letter topic of unusable requests (PAYFLOW_TOPIC_DLQ)")
}

// settings is the validated security settings (the password from the
// environment) and topic names; a mistake is a usage error, reported
// before connecting.
func (k *kafkaFlags) settings() (kafkaconf.Security, kafkaconf.Topics, error) {
	if k.tlsErr != nil {
		return kafkaconf.Security{}, kafkaconf.Topics{}, usagef("%v", k.tlsErr)
	}
	sec := k.sec
	sec.SASLPassword = os.Getenv("PAYFLOW_KAFKA_SASL_PASSWORD")
	if err := sec.Validate(); err != nil {
		return kafkaconf.Security{}, kafkaconf.Topics{}, usagef("%v", err)
	}
	if err := k.topics.Validate(); err != nil {
		return kafkaconf.Security{}, kafkaconf.Topics{}, usagef("%v", err)
	}
	return sec, k.topics.WithDefaults(), nil
}

// envBool reads an on/off variable: on, true, yes, 1 or off, false, no, 0
// (any case); unset or empty is off.
func envBool(name string) (bool, error) {
	switch v := strings.ToLower(strings.TrimSpace(os.Getenv(name))); v {
	case "", "off", "false", "no", "0":
		return false, nil
	case "on", "true", "yes", "1":
		return true, nil
	default:
		return false, fmt.Errorf("%s=%q: use on or off", name, os.Getenv(name))
	}
}

// fromEnv gives a flag whose value may hold a secret (a connection string
// with a password) its value from the environment when it was not given.
// Such flags have no default of their own: a default is printed by --help.
func fromEnv(fl *pflag.FlagSet, flag, env string, p *string) {
	if !fl.Changed(flag) {
		*p = os.Getenv(env)
	}
}
