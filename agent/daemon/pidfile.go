package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PIDFile is where a running daemon records its pid, in the state
// directory of its namespace. The daemon holds an exclusive lock on it for
// as long as it runs: the lock, not the file's existence, says that a
// daemon is running, so a crash never leaves a stale claim.
func PIDFile(stateDir string) string { return filepath.Join(stateDir, "daemon.pid") }

// Running returns the pid of a daemon running with this state directory,
// or 0.
func Running(stateDir string) int {
	f, err := os.Open(PIDFile(stateDir))
	if err != nil {
		return 0
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err == nil {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return 0 // nobody holds it
	}
	b := make([]byte, 32)
	n, _ := f.Read(b)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil || pid <= 0 {
		return -1 // running, pid not written yet
	}
	return pid
}

type pidLock struct{ f *os.File }

// lockPIDFile claims the namespace for this process or says who has it.
func lockPIDFile(stateDir string) (*pidLock, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	// A daemon exiting removes the file it locked: if that happened
	// between our open and our lock, we hold a lock on a file nobody
	// sees. Try again with the new one.
	for {
		p, err := tryLockPIDFile(stateDir)
		if err != nil || p.current() {
			return p, err
		}
		p.f.Close()
	}
}

func (p *pidLock) current() bool {
	var a, b unix.Stat_t
	return unix.Fstat(int(p.f.Fd()), &a) == nil && unix.Stat(p.f.Name(), &b) == nil && a.Ino == b.Ino && a.Dev == b.Dev
}

func tryLockPIDFile(stateDir string) (*pidLock, error) {
	f, err := os.OpenFile(PIDFile(stateDir), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			if pid := Running(stateDir); pid > 0 {
				return nil, fmt.Errorf("%w (pid %d); stop it first (systemctl stop ec2net)", ErrAlreadyRunning, pid)
			}
			return nil, ErrAlreadyRunning
		}
		return nil, fmt.Errorf("pid file lock: %w", err)
	}
	// The pid is for people and `ec2net status`; the lock is what counts,
	// so a failure to write it is not fatal.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &pidLock{f: f}, nil
}

// release removes the pid file while still holding its lock (so no other
// daemon's file is ever removed), then lets go.
func (p *pidLock) release() {
	_ = os.Remove(p.f.Name())
	p.f.Close()
}
