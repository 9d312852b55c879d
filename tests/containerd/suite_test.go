// containerd's own snapshotter test suite (snapshots/testsuite, from
// Debian's golang-github-containerd-containerd-dev) run against ferryd's
// containerd snapshots service through containerd's proxy snapshotter
// client, as containerd itself talks to a proxy plugin.
//
// Every test of the suite gets a fresh ferryd (its own --root under the
// suite's directory, its own socket), as the suite gives every test a new
// snapshotter. Built in GOPATH mode against Debian's Go packages by
// tests/containerd/run_suite.sh; FERRYD names the binary under test.
package ferrysuite

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
)

// startFerryd runs FERRYD on a fresh root below dir and waits for its
// "ready" line; the returned function stops it (SIGTERM, then waits).
func startFerryd(dir string) (string, func() error, error) {
	ferryd := os.Getenv("FERRYD")
	if ferryd == "" {
		return "", nil, fmt.Errorf("FERRYD is not set")
	}
	root := filepath.Join(dir, "ferryd")
	sock := filepath.Join(dir, "snapshots.sock")
	cmd := exec.Command(ferryd, "--root", root, "--cache-size", "64M", "--containerd-socket", sock)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	ready := make(chan error, 1)
	go func() {
		scanner := bufio.NewScanner(stderr)
		var lines []string
		sent := false
		for scanner.Scan() {
			line := scanner.Text()
			lines = append(lines, line)
			if !sent && strings.HasPrefix(line, "ferryd: ready") {
				ready <- nil
				sent = true
			}
		}
		if !sent {
			ready <- fmt.Errorf("ferryd exited before it was ready: %s", strings.Join(lines, "\n"))
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			return "", nil, err
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		return "", nil, fmt.Errorf("ferryd was not ready after 30 s")
	}
	stop := func() error {
		cmd.Process.Signal(syscall.SIGTERM)
		return cmd.Wait()
	}
	return sock, stop, nil
}

func TestSnapshotterSuite(t *testing.T) {
	testsuite.SnapshotterSuite(t, "ferry", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		sock, stop, err := startFerryd(root)
		if err != nil {
			return nil, nil, err
		}
		conn, err := grpc.Dial("unix://"+sock, grpc.WithInsecure())
		if err != nil {
			stop()
			return nil, nil, err
		}
		sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "ferry")
		return sn, func() error {
			conn.Close()
			return stop()
		}, nil
	})
}
