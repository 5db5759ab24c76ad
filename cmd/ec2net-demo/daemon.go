package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ec2net/ec2net/agent/vpcsim"
)

// daemon is one `ec2net run` started inside an instance namespace.
type daemon struct {
	name   string // for messages: "A", "B"
	logs   *syncBuffer
	done   chan error
	ready  chan string // the STATUS= of its READY=1
	notify *net.UnixConn
	stop   func() error
}

// syncBuffer is a bytes.Buffer the daemon's stdout and stderr write to
// from the exec package's copying goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDaemon starts `ec2net run` in inst with its own state directory
// and a notify socket (as systemd's NOTIFY_SOCKET; a path, so it reaches
// across network namespaces) to learn when its first pass is done. The
// process dies with the demo even if the demo is killed (Pdeathsig).
func startDaemon(ctx context.Context, name string, inst *vpcsim.Instance, bin, dir string) (*daemon, error) {
	sock := filepath.Join(dir, "notify-"+name)
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	state := filepath.Join(dir, "state-"+name)
	if err := os.MkdirAll(state, 0o700); err != nil {
		nc.Close()
		return nil, err
	}
	cmd, err := inst.CommandContext(ctx, bin, "run", "--imds-endpoint", "http://169.254.169.254",
		"--state-dir", state, "--config", "/dev/null")
	if err != nil {
		nc.Close()
		return nil, err
	}
	d := &daemon{name: name, logs: &syncBuffer{}, done: make(chan error, 1), ready: make(chan string, 1), notify: nc}
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	cmd.Stdout, cmd.Stderr = d.logs, d.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("start ec2net run in %s: %w", inst.Name, err)
	}
	go func() { d.done <- cmd.Wait() }()
	go d.readNotify()
	d.stop = func() error {
		defer nc.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-d.done:
			d.done <- err
			return err
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			return errors.New("did not stop within 5 s of SIGTERM; killed")
		}
	}
	return d, nil
}

func (d *daemon) readNotify() {
	buf := make([]byte, 4096)
	for {
		n, err := d.notify.Read(buf)
		if err != nil {
			return
		}
		msg := string(buf[:n])
		if strings.Contains(msg, "READY=1") {
			status := ""
			for _, l := range strings.Split(msg, "\n") {
				if s, ok := strings.CutPrefix(l, "STATUS="); ok {
					status = s
				}
			}
			select {
			case d.ready <- status:
			default:
			}
		}
	}
}

// waitReady waits for READY=1 (the first reconcile done).
func (d *daemon) waitReady(ctx context.Context, within time.Duration) (string, error) {
	select {
	case s := <-d.ready:
		return s, nil
	case err := <-d.done:
		d.done <- err
		return "", fmt.Errorf("ec2net run in %s exited: %v\n%s", d.name, err, d.logs.String())
	case <-time.After(within):
		return "", fmt.Errorf("ec2net run in %s not ready within %v\n%s", d.name, within, d.logs.String())
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// story summarises what the daemon logged about one MAC: its messages in
// order, repeats counted, e.g. "link appeared → ENI pending (IMDS still
// propagating) → configured ×11".
func (d *daemon) story(mac string) string {
	var steps []string
	var counts []int
	for _, l := range strings.Split(d.logs.String(), "\n") {
		if !strings.Contains(l, mac) {
			continue
		}
		msg := l
		// Console format: "<time>\t<LEVEL>\t<message>\t<fields as JSON>".
		if f := strings.Split(l, "\t"); len(f) >= 3 {
			msg = f[2]
		}
		if n := len(steps); n > 0 && steps[n-1] == msg {
			counts[n-1]++
			continue
		}
		steps, counts = append(steps, msg), append(counts, 1)
	}
	for i := range steps {
		if counts[i] > 1 {
			steps[i] += fmt.Sprintf(" ×%d", counts[i])
		}
	}
	return strings.Join(steps, " → ")
}
