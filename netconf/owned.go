package netconf

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// recordFileName is the file under Options.StateDir that records what
// ec2net owns. Routes and rules carry Protocol and need no record to be
// recognised; addresses carry no tag on most kernels, so the addresses
// ec2net added are listed here. The tables and local prefixes are recorded
// only to attribute owned routes and rules to an ENI once its link or its
// metadata has gone.
const recordFileName = "state.json"

// record is the ownership record: the "owned" side of every comparison
// (want: the plan; have: the kernel; owned: this).
type record struct {
	Version int                   `json:"version"`
	ENIs    map[string]*recordENI `json:"enis"` // by MAC
}

type recordENI struct {
	ENIID string   `json:"eni_id,omitempty"`
	Table int      `json:"table,omitempty"`
	Addrs []string `json:"addrs,omitempty"` // addresses ec2net added, without length
	Local []string `json:"local,omitempty"` // AnyIP prefixes whose local route ec2net added
	// Intent lists addresses about to be added, written before the
	// netlink writes (write-ahead): after a crash between the two, an
	// intended address found on the link is ec2net's (the pass that
	// intended it had seen it absent).
	Intent []string `json:"intent,omitempty"`
	// BroughtUp is the index of the link ec2net set up. If that link is
	// down later, an administrator (ip link set down, ifdown) did it:
	// respected. A re-attached ENI is a new link, brought up again.
	BroughtUp broughtUp `json:"brought_up,omitempty"`
}

// broughtUp is a link index. Records written before it was one hold
// true ("ec2net set this ENI's link up", whatever its index): that reads
// as broughtUpAnyLink, which a pass turns into the index of the ENI's
// link while it is up (missingLink), and which, while it is down, means
// what it meant then: respected.
type broughtUp int

const broughtUpAnyLink broughtUp = -1

func (b *broughtUp) UnmarshalJSON(data []byte) error {
	switch string(data) {
	case "true":
		*b = broughtUpAnyLink
		return nil
	case "false", "null":
		*b = 0
		return nil
	}
	var n int
	if err := json.Unmarshal(data, &n); err != nil {
		return err
	}
	*b = broughtUp(n)
	return nil
}

func newRecord() *record { return &record{Version: 1, ENIs: map[string]*recordENI{}} }

func (s *record) eni(mac string) *recordENI {
	e := s.ENIs[mac]
	if e == nil {
		e = &recordENI{}
		s.ENIs[mac] = e
	}
	return e
}

// addSorted inserts v into the sorted list unless present.
func addSorted(list []string, v string) []string {
	i, found := slices.BinarySearch(list, v)
	if found {
		return list
	}
	return slices.Insert(list, i, v)
}

// remove drops v from list; nil when nothing is left.
func remove(list []string, v string) []string {
	list = slices.DeleteFunc(list, func(x string) bool { return x == v })
	if len(list) == 0 {
		return nil
	}
	return list
}

func (s *record) clone() *record {
	c := newRecord()
	for mac, e := range s.ENIs {
		ce := *e
		ce.Addrs = slices.Clone(e.Addrs)
		ce.Local = slices.Clone(e.Local)
		ce.Intent = slices.Clone(e.Intent)
		c.ENIs[mac] = &ce
	}
	return c
}

// equal compares two pruned records (nil and empty lists alike).
func (s *record) equal(o *record) bool {
	if len(s.ENIs) != len(o.ENIs) {
		return false
	}
	for mac, a := range s.ENIs {
		b := o.ENIs[mac]
		if b == nil || a.ENIID != b.ENIID || a.Table != b.Table || !slices.Equal(a.Addrs, b.Addrs) || !slices.Equal(a.Local, b.Local) || !slices.Equal(a.Intent, b.Intent) || a.BroughtUp != b.BroughtUp {
			return false
		}
	}
	return true
}

// prune drops entries that no longer record anything.
func (s *record) prune() {
	for mac, e := range s.ENIs {
		if len(e.Addrs) == 0 && len(e.Local) == 0 && len(e.Intent) == 0 && e.Table == 0 {
			delete(s.ENIs, mac)
		}
	}
}

// note updates the record after a change succeeded: an address ec2net
// created is recorded, one it deleted (or found gone) is forgotten, as is
// the local route of a prefix.
func (s *record) note(c Change, created bool) {
	switch {
	case c.Kind == KindAddr && c.Op == OpAdd && created:
		e := s.eni(c.MAC)
		e.Addrs = addSorted(e.Addrs, c.Addr.Prefix.Addr().String())
	case c.Kind == KindAddr && c.Op == OpDel:
		if e := s.ENIs[c.MAC]; e != nil {
			e.Addrs = remove(e.Addrs, c.Addr.Prefix.Addr().String())
		}
	case c.Kind == KindLink && c.LinkSet.Up:
		s.eni(c.MAC).BroughtUp = broughtUp(c.LinkSet.Index)
	case c.Kind == KindRoute && c.Op == OpDel && c.Route.Table == tableLocal && c.MAC != "":
		if e := s.ENIs[c.MAC]; e != nil {
			e.Local = remove(e.Local, c.Route.Dst.String())
		}
	}
}

func (s *record) encode() ([]byte, error) {
	s.prune()
	return json.MarshalIndent(s, "", "  ")
}

// loadRecord reads the record; a missing file is an empty record.
func loadRecord(dir string) (*record, error) {
	b, err := readRecord(dir)
	if err != nil {
		return nil, err
	}
	return decodeRecord(dir, b)
}

// readRecord returns the record file's bytes: nil when there is none.
func readRecord(dir string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, recordFileName))
	if os.IsNotExist(err) {
		return nil, nil
	}
	return b, err
}

func decodeRecord(dir string, b []byte) (*record, error) {
	s := newRecord()
	if b == nil {
		return s, nil
	}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("%s: %v", filepath.Join(dir, recordFileName), err)
	}
	if s.ENIs == nil {
		s.ENIs = map[string]*recordENI{}
	}
	return s, nil
}

// saveRecord writes the record atomically and durably: a reader (or a
// crash) sees the old file or the new one, never half of one. A deleted
// state directory is made again.
func saveRecord(dir string, data []byte) error {
	tmp, err := os.CreateTemp(dir, ".state-*.json")
	if os.IsNotExist(err) {
		if err = os.MkdirAll(dir, 0o700); err == nil {
			tmp, err = os.CreateTemp(dir, ".state-*.json")
		}
	}
	if err != nil {
		return err
	}
	name := tmp.Name()
	_, werr := tmp.Write(append(data, '\n'))
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(name, filepath.Join(dir, recordFileName))
	}
	if werr != nil {
		os.Remove(name)
		return werr
	}
	// The rename is durable once the directory is.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// intend records the addresses a pass is about to add (write-ahead).
func (s *record) intend(changes []Change) bool {
	any := false
	for _, c := range changes {
		if c.Kind == KindAddr && c.Op == OpAdd {
			e := s.eni(c.MAC)
			e.Intent = addSorted(e.Intent, c.Addr.Prefix.Addr().String())
			any = true
		}
	}
	return any
}

// settleIntents drops every intent once the writes have been answered
// (note has recorded what was created).
func (s *record) settleIntents() {
	for _, e := range s.ENIs {
		e.Intent = nil
	}
}
