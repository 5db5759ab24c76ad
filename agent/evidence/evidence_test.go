package evidence

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

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
	tr := New(2, 0)
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
	tr := New(2, 0)
	tr.Filter(snap(imds.Complete, "100.64.1.10", "100.64.1.11"))
	tr.Filter(snap(imds.Complete, "100.64.1.10"))
	tr.Filter(snap(imds.Complete, "100.64.1.10", "100.64.1.11"))
	got := v4s(tr.Filter(snap(imds.Complete, "100.64.1.10")))
	if !slices.Equal(got, []string{"100.64.1.10", "100.64.1.11"}) {
		t.Fatalf("miss count not reset by a read listing it: %v", got)
	}
}

func TestIncompleteReadsAreNoEvidence(t *testing.T) {
	tr := New(2, 0)
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
	tr := New(2, 0)
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
	tr := New(3, 0)
	tr.Filter(snap(imds.Complete, "100.64.1.10", "100.64.1.11"))
	in := snap(imds.Complete, "100.64.1.10")
	in.ENIs[0].IPv4 = in.ENIs[0].IPv4[:1:1]
	tr.Filter(in)
	if len(in.ENIs[0].IPv4) != 1 {
		t.Fatalf("input snapshot modified")
	}
}

func at(s *imds.Snapshot, t time.Time) *imds.Snapshot { s.Taken = t; return s }

// Two reads without an item that are closer together than the time bound
// are not enough: an inconsistency window shorter than it removes nothing.
func TestRemovalNeedsTimeBetweenTheReads(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tr := New(2, 5*time.Second)
	tr.Filter(at(snap(imds.Complete, "100.64.1.10", "100.64.1.11"), t0))
	tr.Filter(at(snap(imds.Complete, "100.64.1.10"), t0.Add(time.Second)))
	got := v4s(tr.Filter(at(snap(imds.Complete, "100.64.1.10"), t0.Add(2*time.Second))))
	if !slices.Equal(got, []string{"100.64.1.10", "100.64.1.11"}) {
		t.Fatalf("two misses 1 s apart: %v, want the address retained", got)
	}
	if due, ok := tr.Due(); !ok || !due.Equal(t0.Add(6*time.Second)) {
		t.Fatalf("due %v %v, want 5 s after the first miss", due, ok)
	}
	got = v4s(tr.Filter(at(snap(imds.Complete, "100.64.1.10"), t0.Add(6*time.Second))))
	if !slices.Equal(got, []string{"100.64.1.10"}) {
		t.Fatalf("misses 5 s apart: %v, want it removed", got)
	}
	if _, ok := tr.Due(); ok {
		t.Fatal("nothing retained, but Due says otherwise")
	}
}

type reads []*imds.Snapshot

func (r *reads) Snapshot(context.Context) (*imds.Snapshot, error) {
	s := (*r)[0]
	*r = (*r)[1:]
	return s, nil
}

// Without history, a removal waits for a second read; nothing to remove
// costs no second read.
func TestConfirmReadsAgainOnlyForARemoval(t *testing.T) {
	gone := netip.MustParsePrefix("100.64.1.11/32")
	removals := func(s *imds.Snapshot) (map[string][]netip.Prefix, error) {
		if slices.Contains(s.ENIs[0].IPv4, gone.Addr()) {
			return nil, nil
		}
		return map[string][]netip.Prefix{s.ENIs[0].MAC: {gone}}, nil
	}
	r := &reads{}
	got, err := New(2, 0).Confirm(context.Background(), r, snap(imds.Complete, "100.64.1.10", "100.64.1.11"), removals)
	if err != nil || len(got.ENIs[0].IPv4) != 2 {
		t.Fatalf("nothing to remove: %v %v", got, err)
	}
	// The second read lists it again: kept. Then a second read without it: removed.
	for _, tc := range []struct {
		second []string
		want   []string
	}{
		{[]string{"100.64.1.10", "100.64.1.11"}, []string{"100.64.1.10", "100.64.1.11"}},
		{[]string{"100.64.1.10"}, []string{"100.64.1.10"}},
	} {
		r := &reads{snap(imds.Complete, tc.second...)}
		got, err := New(2, 0).Confirm(context.Background(), r, snap(imds.Complete, "100.64.1.10"), removals)
		if err != nil || !slices.Equal(v4s(got), tc.want) || len(*r) != 0 {
			t.Errorf("second read %v: got %v (%v), want %v", tc.second, v4s(got), err, tc.want)
		}
	}
}

// Hold keeps what a process has no history of, but never what the
// tracker has just proven gone.
func TestHoldKeepsUnknownItemsButNotProvenRemovals(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tr := New(2, 0)
	mac := "02:00:00:00:00:01"
	unknown := netip.MustParsePrefix("100.64.1.99/32")
	got := v4s(tr.Hold(at(snap(imds.Complete, "100.64.1.10"), t0), map[string][]netip.Prefix{mac: {unknown}}))
	if !slices.Equal(got, []string{"100.64.1.10", "100.64.1.99"}) {
		t.Fatalf("hold of an unknown item: %v", got)
	}
	tr2 := New(2, 0)
	tr2.Filter(at(snap(imds.Complete, "100.64.1.10", "100.64.1.11"), t0))
	tr2.Filter(at(snap(imds.Complete, "100.64.1.10"), t0.Add(time.Second)))
	proven := tr2.Filter(at(snap(imds.Complete, "100.64.1.10"), t0.Add(2*time.Second)))
	got = v4s(tr2.Hold(proven, map[string][]netip.Prefix{mac: {netip.MustParsePrefix("100.64.1.11/32")}}))
	if !slices.Equal(got, []string{"100.64.1.10"}) {
		t.Fatalf("hold brought back a proven removal: %v", got)
	}
}
