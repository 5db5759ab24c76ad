package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
)

// The networkd file follows the primary's name, is removed when ec2net no
// longer manages the secondary ENIs, and each change is one reload. Off
// unless the packaged unit turns it on; never on a host without networkd.
func TestNetworkdFileFollowsThePrimary(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	reloads := 0
	n := &networkd{on: true, dir: dir, state: state, reload: func(context.Context) error { reloads++; return nil }}
	log := zaptest.NewLogger(t)
	path := filepath.Join(dir, networkdUnmanage)
	n.sync(context.Background(), "ens5", true, log)
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), "Name=!ens5") || !strings.Contains(string(b), "Unmanaged=yes") || reloads != 1 {
		t.Fatalf("file %q (%v), %d reloads", b, err, reloads)
	}
	n.sync(context.Background(), "ens5", true, log)
	if reloads != 1 {
		t.Errorf("an unchanged file reloaded networkd again")
	}
	n.sync(context.Background(), "eth0", true, log)
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), "Name=!eth0") || reloads != 2 {
		t.Errorf("renamed primary: %q, %d reloads", b, reloads)
	}
	n.sync(context.Background(), "eth0", false, log)
	if _, err := os.Stat(path); !os.IsNotExist(err) || reloads != 3 {
		t.Errorf("secondary-enis none: file %v, %d reloads", err, reloads)
	}
	off := &networkd{on: false, dir: dir, state: state, reload: n.reload}
	off.sync(context.Background(), "eth0", true, log)
	noNetworkd := &networkd{on: true, dir: dir, state: filepath.Join(state, "absent"), reload: n.reload}
	noNetworkd.sync(context.Background(), "eth0", true, log)
	if _, err := os.Stat(path); !os.IsNotExist(err) || reloads != 3 {
		t.Errorf("wrote without being asked to, or without networkd: %v, %d reloads", err, reloads)
	}
}
