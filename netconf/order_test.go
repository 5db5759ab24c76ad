package netconf

import (
	"math/rand/v2"
	"net/netip"
	"sort"
	"testing"

	"github.com/ec2net/ec2net/netconf/internal/rtnl"
)

// sortByPhase is a stable sort by phase: the same order as a stable
// comparison sort, for changes of every phase in a scrambled diff order.
func TestSortByPhaseIsStable(t *testing.T) {
	kinds := []Change{
		{Kind: KindLink, LinkSet: LinkSetting{NoRA: true}}, {Kind: KindLink, LinkSet: LinkSetting{Up: true}},
		{Op: OpDel, Kind: KindRule}, {Op: OpDel, Kind: KindRoute, Route: rtnl.Route{Gw: netip.MustParseAddr("100.64.1.1")}},
		{Op: OpDel, Kind: KindRoute}, {Op: OpDel, Kind: KindAddr}, {Kind: KindAddr}, {Kind: KindRoute}, {Kind: KindRule},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	changes := make([]Change, 500)
	for i := range changes {
		changes[i] = kinds[rng.IntN(len(kinds))]
		changes[i].MAC = string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	want := append([]Change(nil), changes...)
	sort.SliceStable(want, func(i, j int) bool { return want[i].phase() < want[j].phase() })
	sortByPhase(changes)
	for i := range changes {
		if changes[i].MAC != want[i].MAC || changes[i].phase() != want[i].phase() {
			t.Fatalf("position %d: %s phase %d, want %s phase %d", i, changes[i].MAC, changes[i].phase(), want[i].MAC, want[i].phase())
		}
	}
}
