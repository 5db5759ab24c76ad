package vpcsim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The Docker-like setup of AddDockerLikeBridge: foreign state on the
// instance that ec2net must leave working (amazon-ec2-net-utils #97, where
// policy rules for the primary address broke published ports).
var (
	DockerBridgeIPv4 = netip.MustParsePrefix("100.100.17.1/24")
	DockerContainer  = netip.MustParseAddr("100.100.17.2")
)

// Ports of the published service.
const (
	DockerHostPort      = 8080
	DockerContainerPort = 80
)

type dockerLike struct {
	ns   string
	echo *echoServer
}

func (d *dockerLike) close() {
	if d.echo != nil {
		d.echo.close()
	}
}

// AddDockerLikeBridge builds, inside the instance, what Docker builds for
// one container with a published port: a bridge docker0 (100.100.17.1/24),
// a "container" namespace holding 100.100.17.2 with a TCP listener on port
// 80, IPv4 forwarding on, and nftables DNAT (nat prerouting and output:
// local destination, tcp dport 8080 -> 100.100.17.2:80) plus masquerading
// of the container's outbound traffic. Connecting from the instance to its
// primary address on port 8080 then reaches the container.
func (v *VPC) AddDockerLikeBridge() (hostPort int, containerAddr netip.Addr, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return 0, netip.Addr{}, errors.New("vpcsim: closed")
	}
	if v.container != nil {
		return 0, netip.Addr{}, errors.New("vpcsim: the Docker-like bridge already exists")
	}
	if err := v.addContainerLocked(); err != nil {
		return 0, netip.Addr{}, err
	}
	v.logf("vpcsim: Docker-like bridge docker0 %s, container %s, published port %d", DockerBridgeIPv4, DockerContainer, DockerHostPort)
	return DockerHostPort, DockerContainer, nil
}

// addContainerLocked builds what AddDockerLikeBridge describes.
func (v *VPC) addContainerLocked() error {
	name := v.base + "-c"
	ch, err := nsutil.NewNamed(name)
	if err != nil {
		return fmt.Errorf("vpcsim: container namespace: %w", err)
	}
	// Registered at once so Close removes it whatever fails below.
	v.handles[name] = ch
	d := &dockerLike{ns: name}
	v.container = d
	if err := sysctl(ch, "net.ipv4.conf.all.rp_filter", "0"); err != nil {
		return err
	}
	if err := v.addDocker0Locked(ch); err != nil {
		return err
	}
	cnl, err := netlink.NewHandleAt(ch)
	if err != nil {
		return err
	}
	defer cnl.Close()
	if err := configureContainerLink(cnl); err != nil {
		return err
	}
	if err := v.waitContainerLinkLocked(ch, cnl); err != nil {
		return err
	}
	if d.echo, err = startEcho(ch, DockerContainerPort); err != nil {
		return fmt.Errorf("vpcsim: container listener: %w", err)
	}
	if err := sysctl(v.handles[v.Instance], "net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	if err := installDockerNAT(v.handles[v.Instance]); err != nil {
		return fmt.Errorf("vpcsim: Docker-like DNAT: %w", err)
	}
	return nil
}

// addDocker0Locked creates, in the instance, the bridge docker0 with its
// address and the veth vethc0 plugged into it, whose other end is eth0 in
// the container namespace ch; docker0 and vethc0 are set up.
func (v *VPC) addDocker0Locked(ch netns.NsHandle) error {
	inl := v.def.nl
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "docker0"}}
	if err := inl.LinkAdd(br); err != nil {
		return fmt.Errorf("vpcsim: create docker0: %w", err)
	}
	if err := addAddrs(inl, "docker0", DockerBridgeIPv4); err != nil {
		return err
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "vethc0", Index: routerIndexBase}, // see routerIndexBase
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(ch)),
	}
	if err := inl.LinkAdd(veth); err != nil {
		return fmt.Errorf("vpcsim: create container veth: %w", err)
	}
	hostEnd, err := inl.LinkByName("vethc0")
	if err != nil {
		return err
	}
	dockerBr, err := inl.LinkByName("docker0")
	if err != nil {
		return err
	}
	if err := inl.LinkSetMaster(hostEnd, dockerBr); err != nil {
		return fmt.Errorf("vpcsim: plug vethc0 into docker0: %w", err)
	}
	for _, l := range []netlink.Link{hostEnd, dockerBr} {
		if err := inl.LinkSetUp(l); err != nil {
			return fmt.Errorf("vpcsim: set %s up: %w", l.Attrs().Name, err)
		}
	}
	return nil
}

// configureContainerLink gives the container's eth0 (cnl: netlink in the
// container) its address, sets it up and routes by default via docker0.
func configureContainerLink(cnl *netlink.Handle) error {
	if err := addAddrs(cnl, "eth0", netip.PrefixFrom(DockerContainer, DockerBridgeIPv4.Bits())); err != nil {
		return err
	}
	if err := linkUp(cnl, "eth0"); err != nil {
		return err
	}
	cl, err := cnl.LinkByName("eth0")
	if err != nil {
		return err
	}
	def := &netlink.Route{
		LinkIndex: cl.Attrs().Index,
		Dst:       ipNet(netip.MustParsePrefix("0.0.0.0/0")),
		Gw:        net.IP(DockerBridgeIPv4.Addr().AsSlice()),
	}
	if err := cnl.RouteAdd(def); err != nil {
		return fmt.Errorf("vpcsim: container default route: %w", err)
	}
	return nil
}

// waitContainerLinkLocked waits until the container's link (ch, cnl: the
// container namespace and netlink in it) works end to end.
func (v *VPC) waitContainerLinkLocked(ch netns.NsHandle, cnl *netlink.Handle) error {
	inl := v.def.nl
	// Docker was running long before ec2net: wait until the kernel has
	// the container's link fully up, as a booted host would.
	if err := fastNeighRetrans(v.handles[v.Instance], "docker0"); err != nil {
		return err
	}
	if err := fastNeighRetrans(ch, "eth0"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), linkReadyTimeout)
	defer cancel()
	if err := waitOperUp(ctx, cnl, "eth0"); err != nil {
		return err
	}
	if err := waitOperUp(ctx, inl, "vethc0"); err != nil {
		return err
	}
	return waitPortForwarding(ctx, v.handles[v.Instance], inl, "vethc0")
}

// ProbePublishedPort connects from inside the instance to its primary IPv4
// address on the published port and checks that the container answers.
func (v *VPC) ProbePublishedPort(ctx context.Context) error {
	v.mu.Lock()
	haveContainer := v.container != nil
	v.mu.Unlock()
	if !haveContainer {
		return errors.New("vpcsim: no Docker-like bridge (call AddDockerLikeBridge)")
	}
	primary := v.PrimaryIPv4()
	if !primary.IsValid() {
		return errors.New("vpcsim: no primary IPv4 address (call LaunchPrimary)")
	}
	h, err := v.Handle(v.Instance)
	if err != nil {
		return err
	}
	ctx, cancel := withProbeTimeout(ctx)
	defer cancel()
	dst := netip.AddrPortFrom(primary, DockerHostPort)
	conn, err := dialIn(ctx, h, netip.Addr{}, dst)
	if err != nil {
		return fmt.Errorf("published port %s from the instance: %w", dst, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(ProbeTimeout)
	if dl, ok := ctx.Deadline(); ok {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("published port %s: connected but the container did not answer: %w", dst, err)
	}
	if _, err := netip.ParseAddr(strings.TrimSpace(line)); err != nil {
		return fmt.Errorf("published port %s: unexpected answer %q", dst, line)
	}
	return nil
}

// installDockerNAT programs, in the instance, what Docker's iptables rules
// do for the published port:
//
//	table ip vpcsim_docker {
//		chain prerouting {
//			type nat hook prerouting priority dstnat; policy accept;
//			fib daddr type local tcp dport 8080 dnat to 100.100.17.2:80
//		}
//		chain output {
//			type nat hook output priority -100; policy accept;
//			ip daddr != 127.0.0.0/8 fib daddr type local tcp dport 8080 dnat to 100.100.17.2:80
//		}
//		chain postrouting {
//			type nat hook postrouting priority srcnat; policy accept;
//			ip saddr 100.100.17.0/24 oifname != "docker0" masquerade
//		}
//	}
func installDockerNAT(h netns.NsHandle) error {
	c, err := nftConn(h)
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "vpcsim_docker"})
	accept := nftables.ChainPolicyAccept
	chain := func(name string, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Table: t, Name: name, Type: nftables.ChainTypeNAT,
			Hooknum: hook, Priority: prio, Policy: &accept})
	}
	localPort := append([]expr.Any{
		&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}, matchTCPDport(DockerHostPort)...)
	dnat := dnatTo(DockerContainer, DockerContainerPort)
	pre := chain("prerouting", nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
	c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: concat(localPort, dnat)})
	out := chain("output", nftables.ChainHookOutput, nftables.ChainPriorityNATDest)
	notLoopback := matchPrefix(netip.MustParsePrefix("127.0.0.0/8"), false, true, false)
	c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: concat(notLoopback, localPort, dnat)})
	post := chain("postrouting", nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	masq := concat(matchPrefix(DockerBridgeIPv4.Masked(), true, false, false), []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: ifnameKey("docker0")},
		&expr.Masq{},
	})
	c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: masq})
	return c.Flush()
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
