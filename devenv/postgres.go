package devenv

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
)

// Postgres is a database server for payflow.
type Postgres struct {
	dsn     string
	close   func()
	restart func() error
	once    sync.Once
}

// DSN is the connection string of the payflow database. It always carries
// sslmode=disable when devenv started the server: neither the container
// nor the throwaway server speaks TLS.
func (p *Postgres) DSN() string { return p.dsn }

// Close stops the server if devenv started it; for DATABASE_URL it does
// nothing, since that server belongs to someone else. Safe to call more
// than once.
func (p *Postgres) Close() {
	p.once.Do(func() {
		if p.close != nil {
			p.close()
		}
	})
}

// Restart stops a server devenv started and starts it again on the same
// data and port, for tests of payflow surviving a database restart.
func (p *Postgres) Restart() error {
	if p.restart == nil {
		return errors.New("devenv: only a throwaway server devenv started can be restarted")
	}
	return p.restart()
}

// StartPostgres returns DATABASE_URL's server when set, else a container
// when a Docker engine answers, else a throwaway server from the installed
// PostgreSQL binaries. The database it names is called payflow.
func StartPostgres(ctx context.Context, log *slog.Logger) (*Postgres, error) {
	if log == nil {
		log = slog.Default()
	}
	if dsn := os.Getenv("DATABASE_URL"); dsn != "" {
		log.Info("devenv: postgres from DATABASE_URL")
		return &Postgres{dsn: dsn}, nil
	}
	if err := dockerHealthy(ctx); err == nil {
		p, err := startContainer(ctx)
		if err == nil {
			log.Info("devenv: postgres in a container", "image", postgresImage)
			return p, nil
		}
		log.Warn("devenv: docker answered but the postgres container did not start; using the installed binaries", "err", err)
	} else {
		log.Debug("devenv: no docker engine", "err", err)
	}
	return StartLocalPostgres(ctx, log)
}

const postgresImage = "postgres:15"

// dockerHealthy asks testcontainers itself whether it can reach an engine,
// rather than the docker CLI: the CLI may be installed with no daemon
// behind it (as on CI machines), or absent while a socket works.
func dockerHealthy(ctx context.Context) error {
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return err
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return p.Health(ctx)
}

// startContainer runs postgres:15. Testcontainers' reaper removes the
// container if this process dies without calling Close.
func startContainer(ctx context.Context) (*Postgres, error) {
	c, err := tcpostgres.Run(ctx, postgresImage,
		tcpostgres.WithDatabase("payflow"), tcpostgres.WithUsername("payflow"), tcpostgres.WithPassword("payflow"),
		tcpostgres.BasicWaitStrategies())
	if err != nil {
		// Run can return a half-started container with its error.
		_ = testcontainers.TerminateContainer(c)
		return nil, err
	}
	dsn, err := c.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		_ = c.Terminate(context.Background())
		return nil, err
	}
	return &Postgres{dsn: dsn, close: func() { _ = c.Terminate(context.Background()) }}, nil
}
