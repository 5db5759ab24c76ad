package netconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"go.uber.org/zap"
)

// The one setting ec2net makes through sysctl rather than netlink (the
// kernel reports it in the link dump, IFLA_INET6_CONF, but takes no
// netlink request to change it): accept_ra on secondary ENIs.
// /proc/sys/net shows the network namespace of the thread that opens it,
// so the write runs inside the reconciler's namespace.

func acceptRAPath(link string) string {
	// A dot in a link name is a slash in the sysctl path.
	return filepath.Join("/proc/sys/net/ipv6/conf", strings.ReplaceAll(link, ".", "/"), "accept_ra")
}

// writeNoRA sets accept_ra to 0. A read-only /proc/sys (a container, a
// unit without the path writable) is reported once and not tried again.
func (r *Reconciler) writeNoRA(link string) error {
	err := nsutil.Do(r.ns, func() error {
		return os.WriteFile(acceptRAPath(link), []byte("0\n"), 0o644)
	})
	if err != nil && (errors.Is(err, os.ErrPermission) || isReadOnlyFS(err)) {
		r.sysctlReadOnly = true
		r.log.Warn("cannot stop the kernel taking router advertisements on secondary ENIs (/proc/sys/net is read-only here): "+
			"it may learn default routes through them in main", zap.Error(err))
	}
	return err
}

func isReadOnlyFS(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "read-only")
}
