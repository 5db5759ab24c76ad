package imds

import (
	"net/netip"
	"time"
)

// ENIState says whether an ENI's metadata can be acted on.
//
// Only Complete ENIs are configured. For every other state the consumer
// must leave whatever is already configured for that ENI exactly as it is:
// neither adding nor removing anything, because the metadata is not (yet)
// trustworthy.
type ENIState int

const (
	// Complete: every required key was read, parsed and validated.
	Complete ENIState = iota
	// Pending: IMDS has not finished propagating this ENI (device-number
	// reads 0 for a non-primary ENI on card 0, or a subnet CIDR is missing
	// for a family the ENI has addresses in), or the ENI lists no address
	// at all (NoAddresses: EFA-only, or lag). Re-read later (WaitKey and
	// Peek make that cheap); never guess ids.
	Pending
	// Invalid: IMDS answered, but with something that does not validate
	// (a bad MAC, an address outside its subnet, an absurd size). Reason
	// says what.
	Invalid
	// Unknown: a read needed for this ENI failed (timeout, 5xx, 429, reset,
	// empty or unparsable body) even after retries. Unknown is never
	// presented as empty: nothing may be removed because of it.
	Unknown
)

func (s ENIState) String() string {
	switch s {
	case Complete:
		return "complete"
	case Pending:
		return "pending"
	case Invalid:
		return "invalid"
	case Unknown:
		return "unknown"
	}
	return "state(?)"
}

// ENI is one network interface as IMDS describes it, validated.
//
// Slices are never nil-versus-empty ambiguous: when State is Complete an
// empty slice means IMDS answered 404 (authoritatively none).
type ENI struct {
	MAC         string // lowercase aa:bb:cc:dd:ee:ff, the key under macs/
	Primary     bool   // MAC equals the top-level "mac"
	InterfaceID string // eni-…

	DeviceNumber   int
	NetworkCard    int  // 0 when the key is absent
	HasNetworkCard bool // the network-card key is listed for this MAC

	SubnetIPv4 netip.Prefix   // zero Prefix (IsValid()==false) when the subnet has no IPv4
	SubnetIPv6 []netip.Prefix // subnet-ipv6-cidr-blocks
	VPCIPv4    []netip.Prefix // vpc-ipv4-cidr-blocks
	VPCIPv6    []netip.Prefix // vpc-ipv6-cidr-blocks

	IPv4         []netip.Addr   // local-ipv4s; IPv4[0] is the ENI's primary address
	IPv6         []netip.Addr   // ipv6s
	IPv4Prefixes []netip.Prefix // ipv4-prefix (delegated /28s)
	IPv6Prefixes []netip.Prefix // ipv6-prefix (delegated /80s)

	// IPv4 link-local addresses (169.254.0.0/16) IMDS lists in local-ipv4s
	// (IPv6-only ENIs): kept apart from IPv4, never configured, and exempt
	// from the subnet check.
	IPv4LinkLocal []netip.Addr

	// For `status` only.
	SecurityGroups []string
	PublicIPv4     []netip.Addr
	StatusRead     bool   // SecurityGroups and PublicIPv4 were read in this snapshot (first sight, SnapshotFull)
	StatusError    string // why one of them could not be read ("" when fine)

	State  ENIState
	Reason string // one line, set when State is not Complete

	// NoAddresses is set on a Pending ENI whose every key was read and
	// validated, whose device-number and network-card are settled, and
	// which lists no address and no prefix in either family (local-ipv4s,
	// ipv6s, ipv4-prefix and ipv6-prefix all 404). That is what IMDS shows
	// for an EFA-only interface (p4d/p5/trn: interface-id, device-number,
	// network-card and a subnet, nothing else), and also for an ENA ENI
	// whose addresses have not propagated yet. IMDS cannot tell the two
	// apart; the kernel can: no link with this MAC means a settled
	// EFA-only interface (nothing to configure, nothing to wait for), a
	// link means propagation lag. State stays Pending either way.
	NoAddresses bool

	// WaitKey, on a Pending ENI, names the one key of the ENI's directory
	// (network/interfaces/macs/<mac>/<WaitKey>) that must change before
	// the ENI can become Complete: "device-number", "network-card",
	// "interface-id", "subnet-ipv4-cidr-block", "subnet-ipv6-cidr-blocks",
	// "local-ipv4s" or "ipv6s". It is "" when no single key says it (two
	// ENIs claim one (card, device), the MAC directory itself is missing),
	// and on every ENI that is not Pending. WaitAbsent says the key
	// answered 404; otherwise WaitValue is the value seen, one item per
	// line, trimmed. Peek reads just that key and compares.
	WaitKey    string
	WaitValue  string
	WaitAbsent bool

	// read is the ENI's state from its own reads, before the checks that
	// look at the whole instance (network-card presence, duplicate
	// devices, shared addresses), so that ReadENIs can run those checks
	// again when it merges this ENI into a new snapshot.
	read readVerdict
}

// readVerdict is what an ENI's own reads concluded.
type readVerdict struct {
	set        bool
	state      ENIState
	reason     string
	waitKey    string
	waitValue  string
	waitAbsent bool
}

// wait records the key a Pending ENI waits on.
func (e *ENI) wait(key, value string, absent bool) {
	e.WaitKey, e.WaitValue, e.WaitAbsent = key, value, absent
}

// Snapshot is one consistent read of the instance's network interfaces.
type Snapshot struct {
	PrimaryMAC string // top-level "mac"
	ENIs       []ENI  // sorted by MAC
	Taken      time.Time
}

// ENI returns the ENI with the given MAC, or nil.
func (s *Snapshot) ENI(mac string) *ENI {
	if s == nil {
		return nil
	}
	for i := range s.ENIs {
		if s.ENIs[i].MAC == mac {
			return &s.ENIs[i]
		}
	}
	return nil
}

// PendingMACs lists the MACs of the ENIs that are Pending.
func (s *Snapshot) PendingMACs() []string {
	if s == nil {
		return nil
	}
	var out []string
	for i := range s.ENIs {
		if s.ENIs[i].State == Pending {
			out = append(out, s.ENIs[i].MAC)
		}
	}
	return out
}
