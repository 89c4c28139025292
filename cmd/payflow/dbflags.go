package main

import (
	"math"
	"os"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/payflow/payflow/store"
)

// dbFlags tune the Postgres connection of the commands that hold a pool
// (serve) or connect once (migrate): the environment gives them, flags
// override it.
type dbFlags struct {
	maxConns                   int
	connectTimeout, stmtTimout time.Duration
}

func addDBFlags(fl *pflag.FlagSet, f *dbFlags, pool bool) {
	fl.DurationVar(&f.connectTimeout, "db-connect-timeout", store.DefaultConnectTimeout,
		"how long opening a Postgres connection may take, TCP to authentication; a server that never answers fails the start after it (PAYFLOW_DB_CONNECT_TIMEOUT)")
	if !pool {
		return
	}
	fl.IntVar(&f.maxConns, "db-max-conns", 0,
		"connections in the Postgres pool, with the worker all opened at start and kept (pool_min_conns in DATABASE_URL keeps fewer); the relay holds one more (PAYFLOW_DB_MAX_CONNS; 0: pool_max_conns in DATABASE_URL, else 32)")
	fl.DurationVar(&f.stmtTimout, "db-statement-timeout", store.DefaultStatementTimeout,
		"statement_timeout of the pool's connections; must exceed any legitimate statement (PAYFLOW_DB_STATEMENT_TIMEOUT; 0: the server's own setting)")
}

// options reads the environment for the flags not given and checks them.
// A process that runs the worker keeps a full pool: a connection opened
// under load costs the charges that wait for it (docs/operations.md,
// "Connection budget"); pool_min_conns in DATABASE_URL asks for fewer.
func (f *dbFlags) options(fl *pflag.FlagSet, worker bool) (store.Options, error) {
	if err := fromEnvInt(fl, "db-max-conns", "PAYFLOW_DB_MAX_CONNS", &f.maxConns); err != nil {
		return store.Options{}, err
	}
	if err := fromEnvDuration(fl, "db-connect-timeout", "PAYFLOW_DB_CONNECT_TIMEOUT", &f.connectTimeout); err != nil {
		return store.Options{}, err
	}
	if err := fromEnvDuration(fl, "db-statement-timeout", "PAYFLOW_DB_STATEMENT_TIMEOUT", &f.stmtTimout); err != nil {
		return store.Options{}, err
	}
	if f.maxConns < 0 || f.maxConns > math.MaxInt32 {
		return store.Options{}, usagef("--db-max-conns (PAYFLOW_DB_MAX_CONNS) must be 0 or more, not %d", f.maxConns)
	}
	if f.connectTimeout <= 0 {
		return store.Options{}, usagef("--db-connect-timeout (PAYFLOW_DB_CONNECT_TIMEOUT) must be positive, not %s", f.connectTimeout)
	}
	if f.stmtTimout < 0 {
		return store.Options{}, usagef("--db-statement-timeout (PAYFLOW_DB_STATEMENT_TIMEOUT) must be 0 (none) or positive, not %s", f.stmtTimout)
	}
	o := store.Options{MaxConns: int32(f.maxConns), ConnectTimeout: f.connectTimeout, StatementTimeout: f.stmtTimout}
	if worker {
		o.MinConns = store.FullPool
	}
	if f.stmtTimout == 0 {
		o.StatementTimeout = -1 // none set: the server's (or PgBouncer's) own
	}
	return o, nil
}

// fromEnvDuration sets *p from the environment variable env unless the flag
// was given (or does not exist); a value that is not a duration is a usage
// error naming env.
func fromEnvDuration(fl *pflag.FlagSet, flag, env string, p *time.Duration) error {
	v := os.Getenv(env)
	if fl.Lookup(flag) == nil || fl.Changed(flag) || v == "" {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return usagef("%s=%q: not a duration (e.g. 10s)", env, v)
	}
	*p = d
	return nil
}

// fromEnvInt is fromEnvDuration for a whole number.
func fromEnvInt(fl *pflag.FlagSet, flag, env string, p *int) error {
	v := os.Getenv(env)
	if fl.Lookup(flag) == nil || fl.Changed(flag) || v == "" {
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return usagef("%s=%q: not a whole number", env, v)
	}
	*p = n
	return nil
}
