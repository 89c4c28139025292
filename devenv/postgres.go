package devenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Postgres is a database server for payflow.
type Postgres struct {
	dsn     string
	close   func()
	restart func() error
}

// Restart stops a server devenv started and starts it again on the same
// data and port, for tests of payflow surviving a database restart.
func (p *Postgres) Restart() error {
	if p.restart == nil {
		return errors.New("devenv: only a server devenv started can be restarted")
	}
	return p.restart()
}

// DSN is the connection string of the payflow database.
func (p *Postgres) DSN() string { return p.dsn }

// Close stops the server if devenv started it.
func (p *Postgres) Close() {
	if p.close != nil {
		p.close()
	}
}

// StartPostgres returns DATABASE_URL's server when set, else a container
// when Docker works, else a throwaway local server.
func StartPostgres(ctx context.Context, log *slog.Logger) (*Postgres, error) {
	if dsn := os.Getenv("DATABASE_URL"); dsn != "" {
		return &Postgres{dsn: dsn}, nil
	}
	if dockerWorks(ctx) {
		p, err := startContainer(ctx)
		if err == nil {
			log.Info("devenv: postgres in a container")
			return p, nil
		}
		log.Warn("devenv: docker answered but the container did not start; using local binaries", "err", err)
	}
	return StartLocalPostgres(ctx, log)
}

func dockerWorks(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "docker", "info").Run() == nil
}

func startContainer(ctx context.Context) (*Postgres, error) {
	c, err := tcpostgres.Run(ctx, "postgres:15",
		tcpostgres.WithDatabase("payflow"), tcpostgres.WithUsername("payflow"), tcpostgres.WithPassword("payflow"),
		testcontainers.WithWaitStrategy(wait.ForLog("database system is ready to accept connections").WithOccurrence(2).WithStartupTimeout(60*time.Second)))
	if err != nil {
		return nil, err
	}
	dsn, err := c.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		_ = c.Terminate(ctx)
		return nil, err
	}
	return &Postgres{dsn: dsn, close: func() { _ = c.Terminate(context.Background()) }}, nil
}

// StartLocalPostgres initialises and starts a server in a temporary
// directory from the installed PostgreSQL binaries. The server is a child
// of this process and is told to stop if the process dies.
func StartLocalPostgres(ctx context.Context, log *slog.Logger) (*Postgres, error) {
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "payflow-pg-")
	if err != nil {
		return nil, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	cred, err := credential(dir)
	if err != nil {
		cleanup()
		return nil, err
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		cleanup()
		return nil, fmt.Errorf("devenv: initdb: %v: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		cleanup()
		return nil, err
	}
	var srv *exec.Cmd
	var exited chan struct{}
	start := func() error {
		srv = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-k", dir,
			// Durable settings, as in production: benchmarks on this server
			// must not flatter payflow.
			"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200")
		srv.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGTERM, Setpgid: true}
		logFile, _ := os.OpenFile(filepath.Join(dir, "postgres.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		srv.Stdout, srv.Stderr = logFile, logFile
		if err := srv.Start(); err != nil {
			return fmt.Errorf("devenv: start postgres: %w", err)
		}
		done := make(chan struct{})
		exited = done
		go func() { _ = srv.Wait(); close(done) }()
		return nil
	}
	halt := func() {
		_ = srv.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = srv.Process.Kill()
			<-exited
		}
	}
	if err := start(); err != nil {
		cleanup()
		return nil, err
	}
	stop := func() { halt(); cleanup() }
	base := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	if err := waitReady(ctx, base); err != nil {
		stop()
		out, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
		return nil, fmt.Errorf("devenv: postgres did not start: %v: %s", err, out)
	}
	conn, err := pgx.Connect(ctx, base)
	if err == nil {
		_, err = conn.Exec(ctx, "CREATE DATABASE payflow")
		conn.Close(ctx)
	}
	if err != nil {
		stop()
		return nil, fmt.Errorf("devenv: create database: %w", err)
	}
	log.Info("devenv: throwaway postgres started", "port", port, "dir", dir)
	restart := func() error {
		halt()
		if err := start(); err != nil {
			return err
		}
		return waitReady(context.Background(), base)
	}
	return &Postgres{dsn: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/payflow?sslmode=disable", port), close: stop, restart: restart}, nil
}

// findBinDir finds the newest installed PostgreSQL's binaries.
func findBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("devenv: no PostgreSQL server found: set DATABASE_URL, start Docker, or install postgresql (apt-get install postgresql)")
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// credential is who runs the server: PostgreSQL refuses to run as root, so
// as root it runs as the postgres system user, who must own the directory.
func credential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errors.New("devenv: running as root needs a 'postgres' system user to run the server")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitReady(ctx context.Context, dsn string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := pgx.Connect(ctx, dsn)
		if err == nil {
			c.Close(ctx)
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
