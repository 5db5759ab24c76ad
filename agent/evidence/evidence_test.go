package evidence

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/ec2net/ec2net/agent/imds"
)

func snap(state imds.ENIState, v4 ...string) *imds.Snapshot {
	e := imds.ENI{MAC: "02:00:00:00:00:01", InterfaceID: "eni-0123456789abcdef0", State: state}
	for _, s := range v4 {
		e.IPv4 = append(e.IPv4, netip.MustParseAddr(s))
	}
	return &imds.Snapshot{ENIs: []imds.ENI{e}}
}

func v4s(s *imds.Snapshot) []string {
	var out []string
	for _, a := range s.ENIs[0].IPv4 {
		out = append(out, a.String())
	}
	return out
}

func TestOneMissingReadDoesNotRemoveAnAddress(t *testing.T) {
	tr := New(2)
	tr.Filter(snap(imds.Complete, "100.64.1.10", "100.64.1.11"))
	got := v4s(tr.Filter(snap(imds.Complete, "100.64.1.10")))
	if !slices.Equal(got, []string{"100.64.1.10", "100.64.1.11"}) {
		t.Fatalf("after one miss: %v, want the address retained", got)
	}
	got = v4s(tr.Filter(snap(imds.Complete, "100.64.1.10")))
	if !slices.Equal(got, []string{"100.64.1.10"}) {
		t.Fatalf("after two misses: %v, want it removed", got)
	}
}

func TestAReappearingAddressResetsTheCount(t *testing.T) {
	tr := New(2)
	tr.Filter(snap(imds.Complete, "100.64.1.10", "100.64.1.11"))
	tr.Filter(snap(imds.Complete, "100.64.1.10"))
	tr.Filter(snap(imds.Complete, "100.64.1.10", "100.64.1.11"))
	got := v4s(tr.Filter(snap(imds.Complete, "100.64.1.10")))
	if !slices.Equal(got, []string{"100.64.1.10", "100.64.1.11"}) {
		t.Fatalf("miss count not reset by a read listing it: %v", got)
	}
}

func TestIncompleteReadsAreNoEvidence(t *testing.T) {
	tr := New(2)
	tr.Filter(snap(imds.Complete, "100.64.1.10", "100.64.1.11"))
	for _, st := range []imds.ENIState{imds.Unknown, imds.Invalid, imds.Pending} {
		out := tr.Filter(snap(st))
		if out.ENIs[0].State != st || len(out.ENIs[0].IPv4) != 0 {
			t.Fatalf("%v read was altered: %+v", st, out.ENIs[0])
		}
	}
	// Still only one miss is needed to not-yet remove: the incomplete reads did not count.
	got := v4s(tr.Filter(snap(imds.Complete, "100.64.1.10")))
	if !slices.Equal(got, []string{"100.64.1.10", "100.64.1.11"}) {
		t.Fatalf("incomplete reads counted as misses: %v", got)
	}
}

func TestPrefixesAreTracked(t *testing.T) {
	tr := New(2)
	s := snap(imds.Complete, "100.64.1.10")
	s.ENIs[0].IPv4Prefixes = []netip.Prefix{netip.MustParsePrefix("100.64.1.16/28")}
	tr.Filter(s)
	out := tr.Filter(snap(imds.Complete, "100.64.1.10"))
	if len(out.ENIs[0].IPv4Prefixes) != 1 {
		t.Fatalf("prefix dropped after one miss: %+v", out.ENIs[0])
	}
	if r := tr.Retained(); len(r["02:00:00:00:00:01"]) != 1 {
		t.Fatalf("Retained() = %v", r)
	}
}

func TestFilterDoesNotAliasInput(t *testing.T) {
	tr := New(3)
	tr.Filter(snap(imds.Complete, "100.64.1.10", "100.64.1.11"))
	in := snap(imds.Complete, "100.64.1.10")
	in.ENIs[0].IPv4 = in.ENIs[0].IPv4[:1:1]
	tr.Filter(in)
	if len(in.ENIs[0].IPv4) != 1 {
		t.Fatalf("input snapshot modified")
	}
}
