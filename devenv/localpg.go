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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// serverUser is who runs the throwaway server when this process is root.
// A variable so a test can name a user that does not exist.
var serverUser = "postgres"

// dirPrefix names every throwaway server's directory under os.TempDir, so
// that a later start can find and remove the ones dead processes left.
const dirPrefix = "payflow-pg-"

// ownerFile, inside a throwaway server's directory, holds the pid of the
// process that started it.
const ownerFile = "owner.pid"

// startTimeout bounds how long a fresh server may take to accept
// connections; a loaded 2-core CI machine needs a few seconds at most.
const startTimeout = 60 * time.Second

// StartLocalPostgres initialises and starts a server in a temporary
// directory from the installed PostgreSQL binaries, with a payflow
// database in it. The server is a child of this process and is told to
// shut down if the process dies; the directory such a death leaves behind
// is removed by the next StartLocalPostgres on this machine.
func StartLocalPostgres(ctx context.Context, log *slog.Logger) (*Postgres, error) {
	if log == nil {
		log = slog.Default()
	}
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	sweepStale(log)
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("devenv: %w", err)
	}
	s := &localServer{bin: bin, dir: dir, data: filepath.Join(dir, "data")}
	fail := func(err error) (*Postgres, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fail(fmt.Errorf("devenv: %w", err))
	}
	if s.cred, err = credential(dir); err != nil {
		return fail(err)
	}
	// --no-sync: a throwaway cluster need not survive a power cut while it
	// is being created. The C locale exists everywhere, unlike whatever
	// LANG names.
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", s.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--no-locale")
	initdb.Dir = dir // the server user may not be allowed into our working directory
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("devenv: initdb: %v: %s", err, out))
	}
	// The free port is only free until someone else takes it; a server
	// that exits at once lost that race, so it gets another port.
	for attempt := 1; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			return fail(err)
		}
		err = s.start(ctx)
		if err == nil || !errors.Is(err, errExited) || attempt == 3 {
			break
		}
		log.Warn("devenv: postgres exited at start; trying another port", "port", s.port, "err", err)
	}
	if err != nil {
		return fail(err)
	}
	if err := s.createDatabase(ctx, "payflow"); err != nil {
		s.stop()
		return fail(err)
	}
	log.Info("devenv: throwaway postgres started", "port", s.port, "dir", dir, "bin", bin)
	return &Postgres{
		dsn:   s.dsn("payflow"),
		close: func() { s.stop(); _ = os.RemoveAll(dir) },
		restart: func() error {
			s.stop()
			return s.start(context.Background())
		},
	}, nil
}

// errExited marks a server that exited before it accepted connections.
var errExited = errors.New("postgres exited")

type localServer struct {
	bin, dir, data string
	cred           *syscall.Credential
	port           int

	mu     sync.Mutex
	proc   *os.Process
	exited chan struct{}
}

func (s *localServer) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// start runs postgres itself rather than pg_ctl: pg_ctl daemonizes the
// server, which would then outlive a killed parent, while a direct child
// gets Pdeathsig.
func (s *localServer) start(ctx context.Context) error {
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.data, "-p", strconv.Itoa(s.port), "-k", s.dir,
		// Durable settings (fsync on), as in production: benchmarks and
		// chaos runs on this server must not flatter payflow.
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200")
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: s.cred,
		// SIGINT is PostgreSQL's fast shutdown: it ends sessions and
		// stops at once, where SIGTERM would wait for every client to
		// leave. Pdeathsig is tied to the OS thread that forked, which
		// the Go runtime keeps alive for the process's life.
		Pdeathsig: syscall.SIGINT,
		// Its own process group, so a Ctrl-C at the terminal reaches
		// payflow only, and payflow stops its database after its own
		// work has drained.
		Setpgid: true,
	}
	logFile, err := os.OpenFile(filepath.Join(s.dir, "postgres.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("devenv: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	err = cmd.Start()
	logFile.Close() // the child has its own copy
	if err != nil {
		return fmt.Errorf("devenv: start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.proc, s.exited = cmd.Process, exited
	s.mu.Unlock()
	if err := waitReady(ctx, s.dsn("postgres"), exited); err != nil {
		s.stop()
		out, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
		return fmt.Errorf("devenv: postgres on port %d did not start: %w\n%s", s.port, err, tail(out, 2000))
	}
	return nil
}

// stop shuts the server down fast and waits for it, killing it if it
// has not stopped in 10s. Stopping a stopped server does nothing.
func (s *localServer) stop() {
	s.mu.Lock()
	proc, exited := s.proc, s.exited
	s.mu.Unlock()
	if proc == nil {
		return
	}
	_ = proc.Signal(syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = proc.Kill()
		<-exited
	}
}

func (s *localServer) createDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, s.dsn("postgres"))
	if err != nil {
		return fmt.Errorf("devenv: connect to new server: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("devenv: create database %s: %w", name, err)
	}
	return nil
}

// waitReady polls until the server accepts connections, it exits, or
// startTimeout passes.
func waitReady(ctx context.Context, dsn string, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := pgx.Connect(cctx, dsn)
		cancel()
		if err == nil {
			c.Close(ctx)
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-exited:
			return errExited
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// findBinDir finds the newest installed PostgreSQL's binaries: Debian's
// versioned directories first, then initdb on PATH.
func findBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.SliceStable(dirs, func(i, j int) bool {
		return newer(filepath.Base(filepath.Dir(dirs[i])), filepath.Base(filepath.Dir(dirs[j])))
	})
	if p, err := exec.LookPath("initdb"); err == nil {
		// initdb finds postgres next to its real file, not its symlink.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if isFile(filepath.Join(d, "initdb")) && isFile(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", errors.New("devenv: no PostgreSQL server found: set DATABASE_URL, start Docker, or install postgresql (apt-get install postgresql)")
}

// newer compares versions such as "15", "9.6" numerically.
func newer(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x > y
		}
	}
	return false
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// credential is who runs the server: initdb and postgres refuse to run as
// root, so as root they run as the postgres system user, who must own the
// directory.
func credential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(serverUser)
	if err != nil {
		return nil, fmt.Errorf("devenv: PostgreSQL refuses to run as root, and there is no %q system user to run it as (%v): "+
			"create one (useradd --system %s), run as another user, or set DATABASE_URL", serverUser, err, serverUser)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("devenv: uid of %s: %w", serverUser, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("devenv: gid of %s: %w", serverUser, err)
	}
	if err := os.Chown(dir, int(uid), int(gid)); err != nil {
		return nil, fmt.Errorf("devenv: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("devenv: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// sweepStale removes throwaway servers whose owner died: a test binary
// never calls Close on the server it shares across tests, and a killed
// `payflow dev` cannot, so without this every run would leave ~40MB in
// the temp directory.
func sweepStale(log *slog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		if inUse(d) {
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			log.Warn("devenv: cannot remove a stale throwaway postgres", "dir", d, "err", err)
			continue
		}
		log.Info("devenv: removed a throwaway postgres a dead process left", "dir", d)
	}
}

// inUse reports whether a throwaway server's directory may still be used:
// its owner or its server is alive, or it is too young to have an owner
// file yet. When in doubt it says yes; a leaked directory costs disk, a
// wrongly removed one breaks a running server.
func inUse(dir string) bool {
	if pm, err := readPID(filepath.Join(dir, "data", "postmaster.pid")); err == nil && alive(pm) {
		return true
	}
	owner, err := readPID(filepath.Join(dir, ownerFile))
	if err != nil {
		fi, err := os.Stat(dir)
		return err != nil || time.Since(fi.ModTime()) < 10*time.Minute
	}
	return alive(owner)
}

// readPID reads the number on a file's first line (postmaster.pid has more
// lines after it).
func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("devenv: no pid in %s", path)
	}
	return pid, nil
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
