package vpcsim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netns"
)

// MoveOptions shape VPC.Move.
type MoveOptions struct {
	// Name is the link's name in the new instance; "" keeps the current
	// name (which must be free there).
	Name string
	// Device is the device-number in the new instance; 0 keeps the current
	// one.
	Device int
	// IMDSLag delays the old instance's IMDS forgetting the ENI; 0 removes
	// it at once. (The new instance's IMDS lists it with whatever
	// propagation delay its SetPropagation set, as for Attach.)
	IMDSLag time.Duration
}

// Move detaches an ENI from its instance and attaches it to another, the
// high-availability pattern (EC2: "when you move a network interface from
// one instance to another, network traffic is redirected to the new
// instance"). The old instance sees RTM_DELLINK and, after o.IMDSLag, its
// IMDS no longer lists the ENI; the new instance sees one RTM_NEWLINK for a
// link with the same MAC (down, no addresses), and its IMDS lists the ENI
// with the same addresses. The router's check sets, neighbour entries and
// delegated-prefix routes follow the ENI to its new port, so once the new
// instance configures the addresses they carry traffic again. A primary
// ENI cannot move.
func (v *VPC) Move(mac string, to *Instance, o MoveOptions) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, err := v.eniLocked(mac)
	if err != nil {
		return err
	}
	if to == nil || to.v != v {
		return errors.New("vpcsim: Move: the target is not an instance of this VPC")
	}
	from := e.inst
	switch {
	case e.primary:
		return fmt.Errorf("vpcsim: %s is the primary ENI of %s; EC2 cannot detach it", e.MAC, from.Name)
	case from == to:
		return fmt.Errorf("vpcsim: %s is already attached to %s", e.MAC, to.Name)
	case o.Device < 0:
		return fmt.Errorf("vpcsim: device-number %d", o.Device)
	}
	name := e.Name
	if o.Name != "" {
		name = o.Name
	}
	if len(name) > 15 || strings.ContainsAny(name, "/ ") {
		return fmt.Errorf("vpcsim: link name %q must be 1-15 characters", name)
	}
	if _, err := to.nl.LinkByName(name); err == nil {
		return fmt.Errorf("vpcsim: %s already has a link %s", to.Name, name)
	}
	start := time.Now()
	v.unplugLocked(e) // the veth goes: RTM_DELLINK in the old instance
	if e.inIMDS {
		v.forgetLaterLocked(from, e.MAC, o.IMDSLag)
		e.inIMDS = false
	}
	e.inst, e.Name = to, name
	if o.Device != 0 {
		e.Device = o.Device
	}
	if err := v.plugLocked(e); err != nil {
		delete(v.enis, e.MAC) // detached from both: the caller may Attach again
		return fmt.Errorf("vpcsim: move %s to %s: %w", e.MAC, to.Name, err)
	}
	to.IMDS.AttachENI(v.imdsENILocked(e))
	e.inIMDS = true
	v.logf("vpcsim: moved %s (%s) from %s to %s as %s in %v", e.ID, e.MAC, from.Name, to.Name, e.Name, time.Since(start).Round(time.Microsecond))
	return nil
}

// forgetLaterLocked removes mac from inst's IMDS after lag (at once when
// lag <= 0), unless the ENI is attached to inst again by then.
func (v *VPC) forgetLaterLocked(inst *Instance, mac string, lag time.Duration) {
	if lag <= 0 {
		inst.IMDS.DetachENI(mac)
		return
	}
	v.timers = append(v.timers, time.AfterFunc(lag, func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		if v.closed {
			return
		}
		if e, ok := v.enis[mac]; ok && e.inst == inst {
			return // back on inst: its IMDS lists it again
		}
		inst.IMDS.DetachENI(mac)
	}))
}

// ProbeAnswerer connects from the remote host to dst (a new attempt every
// 100 ms until ctx ends) and reports which instance accepted the
// connection: every instance listens on dst (bound without the address
// being local, IP_FREEBIND) on one port, and the one whose socket accepts
// writes its namespace name back. Traffic for an address reaches only the
// instance the VPC delivers it to and that has it configured, so after a
// Move this shows the new instance answering.
func (v *VPC) ProbeAnswerer(ctx context.Context, dst netip.Addr) (*Instance, ProbeResult, error) {
	rh, err := v.Handle(v.Remote)
	if err != nil {
		return nil, ProbeResult{}, err
	}
	ctx, cancel := withProbeTimeout(ctx)
	defer cancel()
	dst = dst.Unmap()
	lns, err := listenEverywhere(v.Instances(), dst)
	if err != nil {
		return nil, ProbeResult{}, fmt.Errorf("answerer of %s: %w", dst, err)
	}
	var wg sync.WaitGroup
	defer func() {
		for _, l := range lns {
			l.ln.Close()
		}
		wg.Wait()
	}()
	for _, l := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := l.ln.Accept()
				if err != nil {
					return // closed
				}
				_ = c.SetDeadline(time.Now().Add(ProbeTimeout))
				fmt.Fprintf(c, "%s\n", l.inst.Name)
				c.Close()
			}
		}()
	}
	target := netip.AddrPortFrom(dst, uint16(lns[0].ln.Addr().(*net.TCPAddr).Port))
	start := time.Now()
	conn, err := redial(ctx, rh, target)
	if err != nil {
		return nil, ProbeResult{}, fmt.Errorf("TCP remote -> %s: %w", target, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return nil, ProbeResult{}, fmt.Errorf("TCP remote -> %s: connected but no answer: %w", target, err)
	}
	name := strings.TrimSpace(line)
	for _, l := range lns {
		if l.inst.Name == name {
			seen := conn.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			return l.inst, ProbeResult{SeenSource: seen, Latency: time.Since(start)}, nil
		}
	}
	return nil, ProbeResult{}, fmt.Errorf("TCP remote -> %s: unexpected answer %q", target, line)
}

// redialEvery bounds one connection attempt of ProbeAnswerer. A SYN can be
// lost right after an instance sets a link up (the router's bridge port
// forwards only once the kernel has processed the carrier change), and
// TCP would resend it only after a second: a fresh attempt every 100 ms
// keeps the measured time within 100 ms of when the path really opened.
const redialEvery = 100 * time.Millisecond

// redial connects from namespace h to dst, a new attempt every
// redialEvery, until ctx ends.
func redial(ctx context.Context, h netns.NsHandle, dst netip.AddrPort) (net.Conn, error) {
	for {
		next := time.Now().Add(redialEvery)
		actx, cancel := context.WithDeadline(ctx, next)
		conn, err := dialIn(actx, h, netip.Addr{}, dst)
		cancel()
		if err == nil {
			return conn, nil
		}
		// Refused or unreachable at once: wait for the attempt's slot.
		select {
		case <-time.After(time.Until(next)):
		case <-ctx.Done():
			return nil, err
		}
	}
}

type instListener struct {
	inst *Instance
	ln   net.Listener
}

// listenEverywhere opens a listener on dst in every instance, all on the
// port the first one was given.
func listenEverywhere(insts []*Instance, dst netip.Addr) ([]instListener, error) {
	lc := net.ListenConfig{Control: nsutil.FreeBind}
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		var lns []instListener
		port := 0
		for _, i := range insts {
			h, err := i.handle()
			if err != nil {
				lastErr = err
				break
			}
			var ln net.Listener
			err = nsutil.Do(h, func() error {
				var err error
				ln, err = lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(dst, uint16(port)).String())
				return err
			})
			if err != nil {
				lastErr = err
				break
			}
			port = ln.Addr().(*net.TCPAddr).Port
			lns = append(lns, instListener{i, ln})
		}
		if len(lns) == len(insts) {
			return lns, nil
		}
		for _, l := range lns {
			l.ln.Close()
		}
		if !errors.Is(lastErr, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, lastErr
}
