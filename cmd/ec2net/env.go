package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/agent/logging"
	"github.com/ec2net/ec2net/netconf"
	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// env is what the commands that touch IMDS or the kernel need: the IMDS
// client and a reconciler bound to the network namespace ec2net was
// started in (`ip netns exec X ec2net …` works; never assume the host's).
type env struct {
	cfg  config.Config
	log  *zap.Logger
	imds *imds.Client
	rec  *netconf.Reconciler
	ns   netns.NsHandle
}

// newEnv opens the namespace and, withIMDS, an IMDS client; readOnly
// (plan, status) works without root where the kernel allows (netlink
// dumps do; the ownership record may not be readable).
func newEnv(cfg config.Config, readOnly, withIMDS bool) (*env, error) {
	log, err := logging.New(cfg.LogLevel)
	if err != nil {
		return nil, err
	}
	e := &env{cfg: cfg, log: log}
	if withIMDS {
		e.imds, err = imds.New(imds.Options{Endpoint: cfg.IMDSEndpoint, EndpointMode: cfg.IMDSEndpointMode,
			Version: version, Logger: log.Named("imds")})
		if err != nil {
			return nil, err
		}
	}
	if e.ns, err = netns.Get(); err != nil {
		return nil, fmt.Errorf("open current network namespace: %v", err)
	}
	cookie, err := nsutil.Cookie(e.ns)
	if err != nil {
		e.ns.Close()
		return nil, err
	}
	e.rec, err = netconf.New(netconf.Options{NetNS: e.ns, StateDir: filepath.Join(cfg.StateDir, cookie),
		Logger: log.Named("netconf"), ReadOnly: readOnly})
	if err != nil {
		e.ns.Close()
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	e.rec.Close()
	e.ns.Close()
	_ = e.log.Sync()
}

var errNotAdmin = errors.New("this needs CAP_NET_ADMIN: run it as root (sudo ec2net …)")

func checkNetAdmin() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		if os.Geteuid() == 0 {
			return nil
		}
		return errNotAdmin
	}
	if data[0].Effective&(1<<unix.CAP_NET_ADMIN) == 0 {
		return errNotAdmin
	}
	return nil
}

// explain turns an error into the one line that says what to do.
func (e *env) explain(err error) string {
	switch {
	case errors.Is(err, imds.ErrDisabled):
		return "IMDS is turned off for this instance (HTTP 403): enable it with " +
			"aws ec2 modify-instance-metadata-options --instance-id <this instance's id> --http-endpoint enabled"
	case errors.Is(err, imds.ErrUnreachable):
		return fmt.Sprintf("cannot reach IMDS at %s: is this an EC2 instance? see --imds-endpoint", e.imds.Endpoint())
	case errors.Is(err, errNotAdmin):
		return err.Error()
	case errors.Is(err, os.ErrPermission) && !errors.Is(err, unix.EPERM):
		return fmt.Sprintf("%v: the state directory %s is root's: run it as root (sudo ec2net …)", err, e.cfg.StateDir)
	case errors.Is(err, unix.EPERM), errors.Is(err, os.ErrPermission):
		return fmt.Sprintf("%v: this needs CAP_NET_ADMIN: run it as root (sudo ec2net …)", err)
	}
	return err.Error()
}
