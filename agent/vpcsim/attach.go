package vpcsim

import "fmt"

// Hot attach and detach of secondary ENIs, and their announcement to IMDS.

// Attach hot-attaches an ENI as EC2 does: the link appears in the instance
// (one RTM_NEWLINK, down, no addresses) with the router already enforcing
// the ENI's addresses, then IMDS learns about it.
func (v *VPC) Attach(s ENISpec) error { return v.def.Attach(s) }

// AttachLinkOnly is Attach without telling IMDS, for tests of metadata
// that lags behind the kernel; AnnounceIMDS completes it.
func (v *VPC) AttachLinkOnly(s ENISpec) error { return v.def.AttachLinkOnly(s) }

// AnnounceIMDS adds an ENI attached with AttachLinkOnly to its instance's
// IMDS, with its current addresses.
func (v *VPC) AnnounceIMDS(mac string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, err := v.eniLocked(mac)
	if err != nil {
		return err
	}
	e.inst.IMDS.AttachENI(v.imdsENILocked(e))
	e.inIMDS = true
	return nil
}

func (v *VPC) attachLinkLocked(i *Instance, s ENISpec) (*eni, error) {
	e, err := v.validateLocked(s)
	if err != nil {
		return nil, err
	}
	e.inst = i
	if err := v.plugLocked(e); err != nil {
		return nil, err
	}
	v.enis[e.MAC] = e
	return e, nil
}

// Detach removes an ENI: its veth (the instance sees RTM_DELLINK), the
// router's check entries, neighbours and routes for it, and its IMDS entry.
func (v *VPC) Detach(mac string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, err := v.eniLocked(mac)
	if err != nil {
		return err
	}
	if e.primary {
		return fmt.Errorf("vpcsim: %s is the primary ENI; EC2 cannot detach it", e.MAC)
	}
	if e.linked {
		l, err := v.router.LinkByName(e.port)
		if err != nil {
			return fmt.Errorf("vpcsim: detach %s: %w", e.MAC, err)
		}
		if err := v.router.LinkDel(l); err != nil {
			return fmt.Errorf("vpcsim: detach %s: %w", e.MAC, err)
		}
		e.linked = false
	}
	v.unplugLocked(e)
	if e.inIMDS {
		e.inst.IMDS.DetachENI(e.MAC)
	}
	delete(v.enis, e.MAC)
	v.logf("vpcsim: detached %s (%s)", e.Name, e.MAC)
	return nil
}
