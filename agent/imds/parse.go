package imds

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Limits on what one IMDS answer may contain. Real values are far below
// them; anything above is corruption or an attack, never data to act on.
const (
	// MaxBodyBytes is the largest body accepted for any key. The client
	// reads at most one byte more, so a bigger body never sits in memory.
	MaxBodyBytes = 64 << 10
	// MaxENIs is the most ENIs a snapshot describes (EC2's largest
	// instance types attach fewer; VPC CNI caps device numbers at 100).
	MaxENIs = 100
	// MaxAddresses is the most entries one list (or one ENI's addresses
	// together) may hold.
	MaxAddresses = 1000
	// maxListingEntries bounds a directory listing (a MAC directory has
	// about 25 keys; macs/ at most MaxENIs plus garbage we report).
	maxListingEntries = 1000
	// maxReasonInput is how much of a raw value a reason quotes.
	maxReasonInput = 64

	// MaxNetworkCard is the largest network-card accepted. ENI (card,
	// device) gets route table 10000+100*card+device, and its rules take
	// priorities from the same number; with device up to 99, card 226
	// gives 32699, the last below the main table's rule at priority 32766
	// (card 227 would reach 32799). EC2 sells at most 32 cards today
	// (p5.48xlarge); anything beyond 226 is refused, not wrapped.
	MaxNetworkCard = 226
	// MaxDeviceNumber is the largest device-number accepted (100 slots
	// per card in the table formula above).
	MaxDeviceNumber = 99
	// MaxTokenBytes is the largest IMDSv2 session token accepted. Real
	// ones are 56 characters; a bigger answer is corruption, and caching
	// it would make every request fail for the token's whole TTL (IMDS
	// answers 431 to a huge header).
	MaxTokenBytes = 512
)

// tableFormula is quoted by reasons that refuse a card or device.
const tableFormula = "route table 10000+100*card+device must stay below the main table's rule priority 32766"

// errEmpty marks a 200 answer with nothing in it. IMDS never serves an
// empty value (absent keys are 404), so an empty body is a dropped or
// throttled answer: unknown, retried, never "none".
var errEmpty = errors.New("empty body")

// lines splits a body into its non-empty lines, trimmed. IMDS separates
// list items with LF and usually omits the final one; CR is tolerated.
func lines(body string) []string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// quote renders untrusted input for a one-line reason, shortened.
func quote(s string) string {
	if len(s) > maxReasonInput {
		s = s[:maxReasonInput] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// ListingEntry is one line of a directory listing.
type ListingEntry struct {
	Name string // without the trailing "/"
	Dir  bool   // the line ended in "/" (a sub-directory)
}

// parseListing parses a directory listing: one name per line, directories
// with a trailing "/". Names must be printable ASCII without spaces or
// further slashes; duplicates are dropped. An empty listing is errEmpty
// (every directory ec2net reads has at least one child).
func parseListing(body string) ([]ListingEntry, error) {
	ls := lines(body)
	if len(ls) == 0 {
		return nil, errEmpty
	}
	if len(ls) > maxListingEntries {
		return nil, fmt.Errorf("listing has %d entries (limit %d)", len(ls), maxListingEntries)
	}
	seen := make(map[string]bool, len(ls))
	out := make([]ListingEntry, 0, len(ls))
	for _, l := range ls {
		e := ListingEntry{Name: l}
		if strings.HasSuffix(l, "/") {
			e = ListingEntry{Name: l[:len(l)-1], Dir: true}
		}
		if e.Name == "" {
			return nil, fmt.Errorf("listing entry %s has no name", quote(l))
		}
		for i := 0; i < len(e.Name); i++ {
			if c := e.Name[i]; c <= ' ' || c >= 0x7f || c == '/' {
				return nil, fmt.Errorf("listing entry %s is not a key name", quote(l))
			}
		}
		if seen[e.Name] {
			continue
		}
		seen[e.Name] = true
		out = append(out, e)
	}
	return out, nil
}

// IsMAC reports whether s is a MAC address in IMDS's form: lowercase hex,
// colon-separated, six octets (what net.HardwareAddr.String prints).
func IsMAC(s string) bool {
	if len(s) != 17 {
		return false
	}
	for i := 0; i < 17; i++ {
		c := s[i]
		if i%3 == 2 {
			if c != ':' {
				return false
			}
			continue
		}
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// MACListing is the parsed network/interfaces/macs/ directory.
type MACListing struct {
	MACs    []string // valid MACs, sorted, unique
	Invalid []string // entries that are not MACs, as listed (shortened), sorted
}

// parseMACListing parses the macs/ listing. Entries that are not lowercase
// MACs are returned in Invalid, not as an error, so that one bad entry
// does not hide the good ones. Only a listing that is empty or not a
// listing at all is an error.
func parseMACListing(body string) (MACListing, error) {
	entries, err := parseListing(body)
	if err != nil {
		return MACListing{}, err
	}
	var l MACListing
	for _, e := range entries {
		if IsMAC(e.Name) {
			l.MACs = append(l.MACs, e.Name)
			continue
		}
		raw := e.Name
		if len(raw) > maxReasonInput {
			raw = raw[:maxReasonInput]
		}
		l.Invalid = append(l.Invalid, raw)
	}
	sort.Strings(l.MACs)
	sort.Strings(l.Invalid)
	return l, nil
}

// parseSmallUint parses a canonical decimal number 0..max: digits only, no
// sign, no leading zero, surrounding whitespace allowed. why, if not
// empty, explains the limit in the out-of-range error.
func parseSmallUint(body string, max int, what, why string) (int, error) {
	s := strings.TrimSpace(body)
	if s == "" {
		return 0, errEmpty
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%s %s has a leading zero", what, quote(s))
	}
	if why != "" {
		why = " (" + why + ")"
	}
	if len(s) > 3 {
		return 0, fmt.Errorf("%s %s out of range 0-%d%s", what, quote(s), max, why)
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%s %s is not a decimal number", what, quote(s))
		}
		n = n*10 + int(c-'0')
	}
	if n > max {
		return 0, fmt.Errorf("%s %d out of range 0-%d%s", what, n, max, why)
	}
	return n, nil
}

// parseDeviceNumber parses device-number: 0..MaxDeviceNumber (EC2's
// DeviceIndex; the table formula leaves 100 slots per card).
func parseDeviceNumber(body string) (int, error) {
	return parseSmallUint(body, MaxDeviceNumber, "device-number", tableFormula)
}

// parseNetworkCard parses network-card: 0..MaxNetworkCard.
func parseNetworkCard(body string) (int, error) {
	return parseSmallUint(body, MaxNetworkCard, "network-card", tableFormula)
}

// checkToken validates the body of a token PUT before the SDK may cache
// it: 1..MaxTokenBytes bytes, all printable ASCII without spaces (a real
// token is base64). Anything else would be sent back in a header on
// every request for the token's whole TTL.
func checkToken(b []byte) error {
	if len(b) == 0 {
		return errors.New("empty token")
	}
	if len(b) > MaxTokenBytes {
		return fmt.Errorf("token of more than %d bytes", MaxTokenBytes)
	}
	for i, c := range b {
		if c <= ' ' || c >= 0x7f {
			return fmt.Errorf("token byte %d is %#x, not printable ASCII", i, c)
		}
	}
	return nil
}

// parseResourceID parses one "<prefix>-<hex>" id such as eni-0f3cddb84c16e1123
// (older ids have 8 hex digits, newer 17).
func parseResourceID(body, prefix string) (string, error) {
	s := strings.TrimSpace(body)
	if s == "" {
		return "", errEmpty
	}
	if !isResourceID(s, prefix) {
		return "", fmt.Errorf("%s is not a %s… id", quote(s), prefix)
	}
	return s, nil
}

func isResourceID(s, prefix string) bool {
	hex, ok := strings.CutPrefix(s, prefix+"-")
	if !ok || len(hex) == 0 || len(hex) > 32 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		c := hex[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// parseInterfaceID parses interface-id: "eni-" + lowercase hex.
func parseInterfaceID(body string) (string, error) { return parseResourceID(body, "eni") }

// parseIDList parses a list of ids with the given prefix (security-group-ids).
func parseIDList(body, prefix string) ([]string, error) {
	ls := lines(body)
	if len(ls) == 0 {
		return nil, errEmpty
	}
	if len(ls) > MaxAddresses {
		return nil, fmt.Errorf("%d entries (limit %d)", len(ls), MaxAddresses)
	}
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		if !isResourceID(l, prefix) {
			return nil, fmt.Errorf("%s is not a %s… id", quote(l), prefix)
		}
		out = append(out, l)
	}
	return out, nil
}

// family says which address family a list must hold.
type family int

const (
	ipv4 family = 4
	ipv6 family = 6
)

func (f family) String() string {
	if f == ipv4 {
		return "IPv4"
	}
	return "IPv6"
}

func (f family) has(a netip.Addr) bool {
	if f == ipv4 {
		return a.Is4()
	}
	// An IPv4-mapped IPv6 address in an IPv6 list is a confusion of
	// families, not an IPv6 address to configure.
	return a.Is6() && !a.Is4In6()
}

// parseAddrList parses a newline-separated list of addresses of one family
// (local-ipv4s, ipv6s, public-ipv4s). Order is kept (local-ipv4s lists the
// ENI's primary first); repeated addresses are dropped after their first
// appearance; zones are rejected; more than MaxAddresses is an error.
func parseAddrList(body string, f family) ([]netip.Addr, error) {
	ls := lines(body)
	if len(ls) == 0 {
		return nil, errEmpty
	}
	if len(ls) > MaxAddresses {
		return nil, fmt.Errorf("%d addresses (limit %d)", len(ls), MaxAddresses)
	}
	seen := make(map[netip.Addr]bool, len(ls))
	out := make([]netip.Addr, 0, len(ls))
	for _, l := range ls {
		a, err := netip.ParseAddr(l)
		if err != nil {
			return nil, fmt.Errorf("%s is not an address", quote(l))
		}
		if a.Zone() != "" || !f.has(a) {
			return nil, fmt.Errorf("%s is not an %v address", quote(l), f)
		}
		if seen[a] {
			continue
		}
		seen[a] = true
		out = append(out, a)
	}
	return out, nil
}

// parsePrefixList parses a newline-separated list of CIDRs of one family
// (subnet-ipv6-cidr-blocks, vpc-*-cidr-blocks, ipv4-prefix, ipv6-prefix).
// Any text form netip accepts is accepted, including IMDS's uncompressed
// IPv6 ("2001:db8:67f:f201:0:0:0:0/64"); host bits are cleared (Masked), so
// equal networks compare equal whatever their spelling. Repeats are dropped.
func parsePrefixList(body string, f family) ([]netip.Prefix, error) {
	ls := lines(body)
	if len(ls) == 0 {
		return nil, errEmpty
	}
	if len(ls) > MaxAddresses {
		return nil, fmt.Errorf("%d prefixes (limit %d)", len(ls), MaxAddresses)
	}
	seen := make(map[netip.Prefix]bool, len(ls))
	out := make([]netip.Prefix, 0, len(ls))
	for _, l := range ls {
		p, err := netip.ParsePrefix(l)
		if err != nil {
			return nil, fmt.Errorf("%s is not a CIDR", quote(l))
		}
		if !f.has(p.Addr()) {
			return nil, fmt.Errorf("%s is not an %v CIDR", quote(l), f)
		}
		p = p.Masked()
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	return out, nil
}

// parseSinglePrefix parses a key holding exactly one CIDR
// (subnet-ipv4-cidr-block).
func parseSinglePrefix(body string, f family) (netip.Prefix, error) {
	ps, err := parsePrefixList(body, f)
	if err != nil {
		return netip.Prefix{}, err
	}
	if len(ps) != 1 {
		return netip.Prefix{}, fmt.Errorf("%d CIDRs where one is expected", len(ps))
	}
	return ps[0], nil
}
