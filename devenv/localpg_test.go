package devenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const childEnv = "DEVENV_TEST_CHILD"

// TestChildStartsAServer is not a test on its own: the Pdeathsig test runs
// the test binary again with childEnv set, and this starts a server in
// that child, reports it, and waits to be killed.
func TestChildStartsAServer(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("helper for TestThrowawayPostgresDiesWithItsParent")
	}
	p, err := StartLocalPostgres(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	fmt.Println("DSN", p.DSN())
	time.Sleep(time.Hour)
}

// A SIGKILLed owner cannot call Close: its server must shut down by
// itself, and the next start must remove the directory it left.
func TestThrowawayPostgresDiesWithItsParent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestChildStartsAServer$", "-test.v=false")
	child.Env = append(os.Environ(), childEnv+"=1", "DATABASE_URL=")
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var dsn string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "DSN "); ok {
			dsn = rest
			break
		}
		if strings.HasPrefix(sc.Text(), "ERR ") {
			t.Fatal(sc.Text())
		}
	}
	if dsn == "" {
		_ = child.Process.Kill()
		_ = child.Wait()
		t.Fatal("child reported no server")
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		_ = child.Process.Kill()
		t.Fatal(err)
	}
	var dataDir string
	err = c.QueryRow(ctx, "SELECT current_setting('data_directory')").Scan(&dataDir)
	c.Close(ctx)
	if err != nil {
		_ = child.Process.Kill()
		t.Fatal(err)
	}
	pmPID, err := readPID(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		_ = child.Process.Kill()
		t.Fatal(err)
	}

	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for alive(pmPID) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pmPID, syscall.SIGKILL)
			t.Fatalf("postgres (pid %d) outlived its killed parent by 30s", pmPID)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if c, err := pgx.Connect(ctx, dsn); err == nil {
		c.Close(ctx)
		t.Fatal("server still answers after its parent died")
	}

	dir := filepath.Dir(dataDir)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("expected the dead child's directory %s to remain until swept: %v", dir, err)
	}
	sweepStale(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("sweep left %s behind (%v)", dir, err)
	}
}

// The sweep must never take a directory a live process may be using.
func TestInUse(t *testing.T) {
	dead := deadPID(t)
	for _, tc := range []struct {
		name  string
		owner string // content of owner.pid; "" for no file
		age   time.Duration
		want  bool
	}{
		{"live owner", strconv.Itoa(os.Getpid()), time.Hour, true},
		{"dead owner", strconv.Itoa(dead), time.Hour, false},
		{"young, no owner file yet", "", 0, true},
		{"old, no owner file", "", time.Hour, false},
		{"garbage owner file, old", "nonsense", time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.owner != "" {
				if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(tc.owner), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			old := time.Now().Add(-tc.age)
			if err := os.Chtimes(dir, old, old); err != nil {
				t.Fatal(err)
			}
			if got := inUse(dir); got != tc.want {
				t.Fatalf("inUse = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("dead owner, live server", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
			t.Fatal(err)
		}
		_ = os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(dead)), 0o644)
		_ = os.WriteFile(filepath.Join(dir, "data", "postmaster.pid"), []byte(strconv.Itoa(os.Getpid())+"\n/data\n"), 0o644)
		if !inUse(dir) {
			t.Fatal("a directory whose server still runs was judged unused")
		}
	})
}

// deadPID returns the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestRootWithoutPostgresUserFailsClearly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root needs the postgres system user")
	}
	old := serverUser
	serverUser = "payflow-no-such-user"
	defer func() { serverUser = old }()
	_, err := credential(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "refuses to run as root") || !strings.Contains(err.Error(), serverUser) {
		t.Fatalf("err = %v, want a message naming root and the missing user", err)
	}
}

func TestNewerVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"15", "9.6", true},
		{"9.6", "15", false},
		{"16", "15", true},
		{"15", "15", false},
		{"9.6", "9.5", true},
	} {
		if got := newer(tc.a, tc.b); got != tc.want {
			t.Errorf("newer(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
