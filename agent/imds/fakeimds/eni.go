package fakeimds

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ENI describes one interface for AttachENI. Empty or nil fields are
// absent keys (404, not listed), as real IMDS serves them.
type ENI struct {
	MAC            string   // lowercase aa:bb:cc:dd:ee:ff
	InterfaceID    string   // eni-...
	DeviceNumber   int      // device-number
	NetworkCard    *int     // nil: key absent (single-card instance types)
	SubnetIPv4     string   // "100.64.1.0/24"; "" = absent (IPv6-only subnet)
	SubnetIPv6     []string // subnet-ipv6-cidr-blocks
	VPCIPv4        []string // vpc-ipv4-cidr-blocks (vpc-ipv4-cidr-block is the first)
	VPCIPv6        []string // vpc-ipv6-cidr-blocks
	IPv4           []string // local-ipv4s, primary first
	IPv6           []string // ipv6s
	IPv4Prefixes   []string // ipv4-prefix
	IPv6Prefixes   []string // ipv6-prefix
	SecurityGroups []string // security-group-ids (one derived from the VPC when empty)
	PublicIPv4     []string // public-ipv4s (and ipv4-associations/)
}

// Per-ENI key names.
const (
	keyDeviceNumber = "device-number"
	keyInterfaceID  = "interface-id"
	keyMAC          = "mac"
	keyNetworkCard  = "network-card"
	keyLocalIPv4s   = "local-ipv4s"
	keyIPv6s        = "ipv6s"
	keyIPv4Prefix   = "ipv4-prefix"
	keyIPv6Prefix   = "ipv6-prefix"
	keySubnetID     = "subnet-id"
	keySubnetIPv4   = "subnet-ipv4-cidr-block"
	keySubnetIPv6   = "subnet-ipv6-cidr-blocks"
	keyVPCID        = "vpc-id"
	keyVPCIPv4      = "vpc-ipv4-cidr-block"
	keyVPCIPv4s     = "vpc-ipv4-cidr-blocks"
	keyVPCIPv6s     = "vpc-ipv6-cidr-blocks"
	keySGIDs        = "security-group-ids"
	keyPublicIPv4s  = "public-ipv4s"
	keyOwnerID      = "owner-id"
	keyAssociations = "ipv4-associations"
)

var macsPath = []string{"network", "interfaces", "macs"}

// macDir returns an ENI's directory; caller holds s.mu.
func (s *Server) macDir(mac string) *node {
	n := s.metaData().lookup(append(slices.Clone(macsPath), mac))
	if n == nil || !n.isDir() {
		return nil
	}
	return n
}

// fakeID makes a stable resource id ("subnet-", "vpc-", "sg-") from the
// text it stands for, so ENIs in the same subnet share a subnet id.
func fakeID(prefix string, of ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(of, "\n")))
	return prefix + hex.EncodeToString(sum[:])[:17]
}

func setList(d *node, key string, values []string) {
	if len(values) == 0 {
		delete(d.children, key)
		return
	}
	d.children[key] = &node{value: strings.Join(values, "\n")}
}

// AttachENI adds (or replaces) network/interfaces/macs/<mac>/. When a
// propagation delay is set, the ENI's propagation window starts now.
func (s *Server) AttachENI(e ENI) {
	e.MAC = strings.ToLower(e.MAC)
	d := newDir()
	leaf := func(k, v string) {
		if v != "" {
			d.children[k] = &node{value: v}
		}
	}
	leaf(keyDeviceNumber, strconv.Itoa(e.DeviceNumber))
	leaf(keyInterfaceID, e.InterfaceID)
	leaf(keyMAC, e.MAC)
	if e.NetworkCard != nil {
		leaf(keyNetworkCard, strconv.Itoa(*e.NetworkCard))
	}
	leaf(keySubnetIPv4, e.SubnetIPv4)
	setList(d, keySubnetIPv6, e.SubnetIPv6)
	if len(e.VPCIPv4) > 0 {
		leaf(keyVPCIPv4, e.VPCIPv4[0])
	}
	setList(d, keyVPCIPv4s, e.VPCIPv4)
	setList(d, keyVPCIPv6s, e.VPCIPv6)
	setList(d, keyLocalIPv4s, e.IPv4)
	setList(d, keyIPv6s, e.IPv6)
	setList(d, keyIPv4Prefix, e.IPv4Prefixes)
	setList(d, keyIPv6Prefix, e.IPv6Prefixes)
	vpc := append(slices.Clone(e.VPCIPv4), e.VPCIPv6...)
	subnet := append([]string{e.SubnetIPv4}, e.SubnetIPv6...)
	leaf(keyVPCID, fakeID("vpc-", vpc...))
	leaf(keySubnetID, fakeID("subnet-", subnet...))
	sgs := e.SecurityGroups
	if len(sgs) == 0 {
		sgs = []string{fakeID("sg-", vpc...)}
	}
	setList(d, keySGIDs, sgs)
	setList(d, keyPublicIPv4s, e.PublicIPv4)
	if len(e.PublicIPv4) > 0 && len(e.IPv4) > 0 {
		assoc := newDir()
		for i, pub := range e.PublicIPv4 {
			assoc.children[pub] = &node{value: e.IPv4[min(i, len(e.IPv4)-1)]}
		}
		d.children[keyAssociations] = assoc
	}
	leaf(keyOwnerID, defaultAccountID)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.metaData().mkdirs(macsPath).children[e.MAC] = d
	if s.propagation > 0 {
		w := window{until: s.now().Add(s.propagation), missing: map[string]bool{}}
		for _, k := range s.propagationMissing {
			w.missing[k] = true
		}
		s.windows[e.MAC] = w
	} else {
		delete(s.windows, e.MAC)
	}
	s.primaryChangedLocked(e.MAC)
}

// DetachENI removes the ENI's directory.
func (s *Server) DetachENI(mac string) {
	mac = strings.ToLower(mac)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.metaData().remove(append(slices.Clone(macsPath), mac))
	delete(s.windows, mac)
	s.primaryChangedLocked(mac)
}

// editList adds or removes values of one multi-valued key of an ENI. An
// unknown MAC is ignored (the ENI may have been detached meanwhile). A list
// that becomes empty disappears (404), as in real IMDS.
func (s *Server) editList(mac, key string, add bool, values []string) {
	mac = strings.ToLower(mac)
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.macDir(mac)
	if d == nil {
		return
	}
	cur := lines(d.children[key])
	for _, v := range values {
		i := slices.Index(cur, v)
		switch {
		case add && i < 0:
			cur = append(cur, v)
		case !add && i >= 0:
			cur = slices.Delete(cur, i, i+1)
		}
	}
	setList(d, key, cur)
	s.primaryChangedLocked(mac)
}

// AssignIPv4 appends addresses to local-ipv4s.
func (s *Server) AssignIPv4(mac string, addrs ...string) { s.editList(mac, keyLocalIPv4s, true, addrs) }

// UnassignIPv4 removes addresses from local-ipv4s.
func (s *Server) UnassignIPv4(mac string, addrs ...string) {
	s.editList(mac, keyLocalIPv4s, false, addrs)
}

// AssignIPv6 appends addresses to ipv6s.
func (s *Server) AssignIPv6(mac string, addrs ...string) { s.editList(mac, keyIPv6s, true, addrs) }

// UnassignIPv6 removes addresses from ipv6s.
func (s *Server) UnassignIPv6(mac string, addrs ...string) { s.editList(mac, keyIPv6s, false, addrs) }

// prefixKey picks ipv4-prefix or ipv6-prefix by parsing p.
func prefixKey(p string) string {
	if pp, err := netip.ParsePrefix(p); err == nil && pp.Addr().Is6() && !pp.Addr().Is4In6() {
		return keyIPv6Prefix
	}
	if a, err := netip.ParseAddr(p); err == nil && a.Is6() {
		return keyIPv6Prefix
	}
	return keyIPv4Prefix
}

// AssignPrefix delegates prefixes: IPv4 ones go to ipv4-prefix, IPv6 ones
// to ipv6-prefix.
func (s *Server) AssignPrefix(mac string, prefixes ...string) {
	for _, p := range prefixes {
		s.editList(mac, prefixKey(p), true, []string{p})
	}
}

// UnassignPrefix removes delegated prefixes.
func (s *Server) UnassignPrefix(mac string, prefixes ...string) {
	for _, p := range prefixes {
		s.editList(mac, prefixKey(p), false, []string{p})
	}
}

// SetPrimaryMAC sets the top-level mac, and local-ipv4 (and ipv6) from that
// ENI's first address when it has one.
func (s *Server) SetPrimaryMAC(mac string) {
	mac = strings.ToLower(mac)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.metaData().children["mac"] = &node{value: mac}
	s.primaryChangedLocked(mac)
}

// primaryChangedLocked keeps the top-level keys derived from the primary
// ENI in step after a change to ENI mac.
func (s *Server) primaryChangedLocked(mac string) {
	md := s.metaData()
	top := md.children["mac"]
	if top == nil || top.isDir() || top.value != mac {
		return
	}
	d := s.macDir(mac)
	for key, from := range map[string]string{"local-ipv4": keyLocalIPv4s, "ipv6": keyIPv6s} {
		if vals := lines(d.lookupOrNil(from)); len(vals) > 0 {
			md.children[key] = &node{value: vals[0]}
		} else {
			delete(md.children, key)
		}
	}
	s.refreshDocumentLocked()
}

func (n *node) lookupOrNil(key string) *node {
	if n == nil || !n.isDir() {
		return nil
	}
	return n.children[key]
}

// refreshDocumentLocked rebuilds the identity document of a server made by
// New from its current meta-data.
func (s *Server) refreshDocumentLocked() {
	if !s.synthDocument {
		return
	}
	md := s.metaData()
	get := func(p ...string) string {
		if n := md.lookup(p); n != nil && !n.isDir() {
			return n.value
		}
		return ""
	}
	doc := struct {
		AccountID        string  `json:"accountId"`
		Architecture     string  `json:"architecture"`
		AvailabilityZone string  `json:"availabilityZone"`
		ImageID          string  `json:"imageId"`
		InstanceID       string  `json:"instanceId"`
		InstanceType     string  `json:"instanceType"`
		PrivateIP        *string `json:"privateIp"`
		Region           string  `json:"region"`
		Version          string  `json:"version"`
	}{
		AccountID:        defaultAccountID,
		Architecture:     "x86_64",
		AvailabilityZone: get("placement", "availability-zone"),
		ImageID:          get("ami-id"),
		InstanceID:       get("instance-id"),
		InstanceType:     get("instance-type"),
		Region:           get("placement", "region"),
		Version:          "2017-09-30",
	}
	if ip := get("local-ipv4"); ip != "" {
		doc.PrivateIP = &ip
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	s.root.mkdirs([]string{"dynamic", "instance-identity"}).children["document"] = &node{value: string(b)}
}

// Set writes a leaf at path, relative to /latest/meta-data/ (a path that
// starts with "/latest/" is taken from there, e.g. for dynamic/...).
// Missing directories are created.
func (s *Server) Set(path string, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	base, segs := s.resolve(path)
	if len(segs) == 0 {
		return
	}
	base.set(segs, value)
}

// Delete removes the leaf or directory at path (as for Set).
func (s *Server) Delete(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	base, segs := s.resolve(path)
	base.remove(segs)
}

func (s *Server) resolve(path string) (*node, []string) {
	base := s.metaData()
	if rel, ok := strings.CutPrefix(path, "/latest/"); ok {
		base, path = s.root, rel
	}
	segs, ok := splitPath(strings.TrimPrefix(path, "/"))
	if !ok {
		return base, nil
	}
	return base, segs
}

// ENI returns the ENI's current data as configured (not masked by a
// propagation window), whether it came from AttachENI or a tree.
func (s *Server) ENI(mac string) (ENI, bool) {
	mac = strings.ToLower(mac)
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.macDir(mac)
	if d == nil {
		return ENI{}, false
	}
	val := func(k string) string {
		if c := d.children[k]; c != nil && !c.isDir() {
			return c.value
		}
		return ""
	}
	e := ENI{
		MAC:            mac,
		InterfaceID:    val(keyInterfaceID),
		SubnetIPv4:     val(keySubnetIPv4),
		SubnetIPv6:     lines(d.children[keySubnetIPv6]),
		VPCIPv4:        lines(d.children[keyVPCIPv4s]),
		VPCIPv6:        lines(d.children[keyVPCIPv6s]),
		IPv4:           lines(d.children[keyLocalIPv4s]),
		IPv6:           lines(d.children[keyIPv6s]),
		IPv4Prefixes:   lines(d.children[keyIPv4Prefix]),
		IPv6Prefixes:   lines(d.children[keyIPv6Prefix]),
		SecurityGroups: lines(d.children[keySGIDs]),
		PublicIPv4:     lines(d.children[keyPublicIPv4s]),
	}
	if len(e.VPCIPv4) == 0 {
		e.VPCIPv4 = lines(d.children[keyVPCIPv4])
	}
	e.DeviceNumber, _ = strconv.Atoi(val(keyDeviceNumber))
	if c := val(keyNetworkCard); c != "" {
		if n, err := strconv.Atoi(c); err == nil {
			e.NetworkCard = &n
		}
	}
	return e, true
}

// MACs lists the attached ENIs' MACs in IMDS order (text order).
func (s *Server) MACs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.metaData().lookup(macsPath)
	if d == nil || !d.isDir() {
		return nil
	}
	var out []string
	for mac, c := range d.children {
		if c.isDir() {
			out = append(out, mac)
		}
	}
	slices.Sort(out)
	return out
}

// SetPropagation makes every subsequent AttachENI propagate slowly: for d
// after the attach, that ENI's device-number reads "0" and each of
// missingKeys (e.g. "subnet-ipv4-cidr-block", "ipv6s", "network-card")
// answers 404 and is not listed in the MAC directory. d <= 0 turns it off
// for later attaches (windows already running keep running).
func (s *Server) SetPropagation(d time.Duration, missingKeys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.propagation = d
	s.propagationMissing = slices.Clone(missingKeys)
}

// FinishPropagation ends every running propagation window now.
func (s *Server) FinishPropagation() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.windows)
}

// Propagating reports whether the ENI's propagation window is running.
func (s *Server) Propagating(mac string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.activeWindow(strings.ToLower(mac))
	return ok
}

// activeWindow: caller holds s.mu.
func (s *Server) activeWindow(mac string) (window, bool) {
	w, ok := s.windows[mac]
	if !ok {
		return window{}, false
	}
	if !s.now().Before(w.until) {
		delete(s.windows, mac)
		return window{}, false
	}
	return w, true
}
