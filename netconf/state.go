package netconf

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// stateFileName is the file under Options.StateDir that records what ec2net
// added. Routes and rules carry Protocol and need no record to be
// recognised; addresses carry no tag on most kernels, so the addresses
// ec2net added are listed here. The tables and local prefixes are recorded
// only to attribute owned routes and rules to an ENI once its link or its
// metadata has gone.
const stateFileName = "state.json"

type stateFile struct {
	Version int                  `json:"version"`
	ENIs    map[string]*stateENI `json:"enis"` // by MAC
}

type stateENI struct {
	ENIID string   `json:"eni_id,omitempty"`
	Table int      `json:"table,omitempty"`
	Addrs []string `json:"addrs,omitempty"` // addresses ec2net added, without length
	Local []string `json:"local,omitempty"` // AnyIP prefixes whose local route ec2net added
}

func newState() *stateFile { return &stateFile{Version: 1, ENIs: map[string]*stateENI{}} }

func (s *stateFile) eni(mac string) *stateENI {
	e := s.ENIs[mac]
	if e == nil {
		e = &stateENI{}
		s.ENIs[mac] = e
	}
	return e
}

func (s *stateFile) owns(mac, addr string) bool {
	e := s.ENIs[mac]
	if e == nil {
		return false
	}
	for _, a := range e.Addrs {
		if a == addr {
			return true
		}
	}
	return false
}

func addString(list []string, v string) []string {
	for _, x := range list {
		if x == v {
			return list
		}
	}
	list = append(list, v)
	sort.Strings(list)
	return list
}

func removeString(list []string, v string) []string {
	out := list[:0]
	for _, x := range list {
		if x != v {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (s *stateFile) clone() *stateFile {
	c := newState()
	for mac, e := range s.ENIs {
		ce := *e
		ce.Addrs = append([]string(nil), e.Addrs...)
		ce.Local = append([]string(nil), e.Local...)
		c.ENIs[mac] = &ce
	}
	return c
}

// equal compares two pruned states (nil and empty lists alike).
func (s *stateFile) equal(o *stateFile) bool {
	if len(s.ENIs) != len(o.ENIs) {
		return false
	}
	for mac, a := range s.ENIs {
		b := o.ENIs[mac]
		if b == nil || a.ENIID != b.ENIID || a.Table != b.Table || !sameStrings(a.Addrs, b.Addrs) || !sameStrings(a.Local, b.Local) {
			return false
		}
	}
	return true
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// prune drops entries that no longer record anything.
func (s *stateFile) prune() {
	for mac, e := range s.ENIs {
		if len(e.Addrs) == 0 && len(e.Local) == 0 && e.Table == 0 {
			delete(s.ENIs, mac)
		}
	}
}

func (s *stateFile) encode() ([]byte, error) {
	s.prune()
	return json.MarshalIndent(s, "", "  ")
}

// loadState reads the state file; a missing file is an empty state.
func loadState(dir string) (*stateFile, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFileName))
	if os.IsNotExist(err) {
		return newState(), nil
	}
	if err != nil {
		return nil, err
	}
	s := newState()
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("%s: %v", filepath.Join(dir, stateFileName), err)
	}
	if s.ENIs == nil {
		s.ENIs = map[string]*stateENI{}
	}
	return s, nil
}

// saveState writes the state atomically: a reader (or a crash) sees the old
// file or the new one, never half of one.
func saveState(dir string, data []byte) error {
	tmp, err := os.CreateTemp(dir, ".state-*.json")
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
		werr = os.Rename(name, filepath.Join(dir, stateFileName))
	}
	if werr != nil {
		os.Remove(name)
	}
	return werr
}
