// Package hostcheck finds what on a host competes with ec2net or defeats
// it, and says what each will do and how to stop it: systemd-networkd
// deleting foreign rules or managing secondary ENIs, NetworkManager's
// automatic connections, ifupdown stanzas, amazon-ec2-net-utils,
// cloud-init's multi-NIC policy routing, signs of the EKS VPC CNI, and the
// kernel settings that matter (rp_filter, MTU, default routes in main
// through a secondary ENI). Measured behaviour of each program:
// ../shared/reference/coexistence.md and packaging/dropins/README.md.
//
// It only reads files (under Host.Root, so tests use a directory) and the
// values the caller collected from the kernel; it changes nothing.
// `ec2net doctor` prints every finding, `ec2net status` the problems, and
// the daemon logs each problem once.
package hostcheck

import (
	"bufio"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Severity says whether a finding needs a person.
type Severity int

const (
	OK        Severity = iota // checked, nothing to do
	Note                      // worth knowing; nothing is broken
	Problem                   // something breaks or will break ec2net's configuration
	Unchecked                 // could not be checked
)

func (s Severity) String() string {
	switch s {
	case OK:
		return "ok"
	case Note:
		return "note"
	case Problem:
		return "problem"
	}
	return "unchecked"
}

// MarshalText makes JSON carry the name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Finding is one result.
type Finding struct {
	Severity Severity `json:"severity"`
	Check    string   `json:"check"` // networkd, networkmanager, ifupdown, ec2-net-utils, cloud-init, vpc-cni, rp_filter, mtu, main-default
	Link     string   `json:"link"`  // the link it is about; "" for the host
	Text     string   `json:"text"`  // what was found and what it does
	Fix      string   `json:"fix"`   // what to do; "" when nothing
}

// Link is one ENI's link.
type Link struct {
	Name    string
	Index   int
	MAC     string
	Primary bool
	MTU     int
	Driver  string // ena, ixgbevf, veth…; "" unknown
}

// Default is a default route of the main table.
type Default struct {
	Family int // 4 or 6
	Link   string
	Index  int
	Metric int
	Proto  string // dhcp, ra, static, boot, kernel or a number
}

// Host is what the checks look at.
type Host struct {
	Root         string // file system root of the files and processes read; "" means "/"
	SysRoot      string // where /proc/sys is read (the namespace's sysctls); "" means "/"
	ENIs         []Link // the ENIs' links (IMDS's ENIs present here)
	LinkNames    []string
	MainDefaults []Default
	MTUKeep      bool // mtu = keep: the MTU is left alone on purpose
	PrimaryOnly  bool // secondary-enis resolved to none: ec2net leaves the secondary ENIs alone
}

func (h *Host) path(p string) string {
	if h.Root == "" {
		return p
	}
	return filepath.Join(h.Root, p)
}

func (h *Host) exists(p string) bool {
	_, err := os.Stat(h.path(p))
	return err == nil
}

func (h *Host) secondaries() []Link {
	var out []Link
	for _, l := range h.ENIs {
		if !l.Primary {
			out = append(out, l)
		}
	}
	return out
}

func (h *Host) primary() *Link {
	for i := range h.ENIs {
		if h.ENIs[i].Primary {
			return &h.ENIs[i]
		}
	}
	return nil
}

// Managers runs the checks of competing network managers.
func Managers(h Host) []Finding {
	var out []Finding
	out = append(out, networkd(&h)...)
	out = append(out, networkManager(&h)...)
	out = append(out, ifupdown(&h)...)
	out = append(out, ec2NetUtils(&h)...)
	out = append(out, cloudInit(&h)...)
	out = append(out, vpcCNI(&h)...)
	return out
}

// All runs every check.
func All(h Host) []Finding {
	return append(Managers(h), Kernel(h)...)
}

// running reports whether a process with this command name (as
// /proc/<pid>/comm holds it, 15 characters at most) runs.
func (h *Host) running(comm string) bool {
	if len(comm) > 15 {
		comm = comm[:15]
	}
	ents, err := os.ReadDir(h.path("/proc"))
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(h.path("/proc/" + e.Name() + "/comm"))
		if err == nil && strings.TrimSpace(string(b)) == comm {
			return true
		}
	}
	return false
}

// confFiles lists the files of a configuration and its drop-ins in the
// order systemd (and NetworkManager) read them: main first, then every
// *.conf of the drop-in directories by file name, a name in a later
// directory replacing the same name in an earlier one.
func (h *Host) confFiles(main string, dirs ...string) []string {
	var out []string
	if main != "" && h.exists(main) {
		out = append(out, h.path(main))
	}
	byName := map[string]string{}
	for _, d := range dirs {
		ents, _ := os.ReadDir(h.path(d))
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".conf") && !e.IsDir() {
				byName[e.Name()] = h.path(filepath.Join(d, e.Name()))
			}
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, byName[n])
	}
	return out
}

// iniValues reads key=value lines of one section from files in order;
// a later file's value wins. "key+=v" appends (NetworkManager's syntax).
func iniValues(files []string, section string) map[string]string {
	vals := map[string]string{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		in := false
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			l := strings.TrimSpace(sc.Text())
			switch {
			case l == "" || l[0] == '#' || l[0] == ';':
			case l[0] == '[':
				in = strings.EqualFold(strings.Trim(l, "[]"), section)
			case in:
				k, v, ok := strings.Cut(l, "=")
				if !ok {
					continue
				}
				k, v = strings.TrimSpace(k), strings.TrimSpace(v)
				if base, add := strings.CutSuffix(k, "+"); add {
					if vals[base] != "" && v != "" {
						v = vals[base] + "," + v
					}
					k = base
				}
				vals[k] = v
			}
		}
		fh.Close()
	}
	return vals
}

func yes(v string) bool {
	switch strings.ToLower(v) {
	case "yes", "true", "1", "on":
		return true
	}
	return false
}

func names(ls []Link) string {
	var s []string
	for _, l := range ls {
		s = append(s, l.Name)
	}
	return strings.Join(s, ", ")
}
