package netconf

import "testing"

func TestIsPodVeth(t *testing.T) {
	for name, want := range map[string]bool{
		"eni0123456789a": true, "enifedcba98765": true,
		"eni0123456789": false, "eni0123456789ab": false, "eni0123456789A": false,
		"eth0": false, "ens5": false, "enx0123456789a": false, "eni012345678-a": false,
	} {
		if IsPodVeth(name) != want {
			t.Errorf("IsPodVeth(%q) = %v", name, !want)
		}
	}
}
