// Package config holds ec2net's configuration: defaults, the file format
// (/etc/ec2net/ec2net.conf) and the command-line flags, one flag per key.
//
// The file is deliberately simple: one "key = value" per line, '#' starts a
// comment, lists are comma-separated. Unknown keys and bad values are errors
// that name the file, the line and the key.
package config

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ec2net/ec2net/agent/imds"
)

// DefaultPath is where packages install the commented default file.
const DefaultPath = "/etc/ec2net/ec2net.conf"

// MTU policies.
const (
	MTUAuto = "auto" // 9001 on ena/ixgbevf links, as the VPC's DHCP would set; others untouched
	MTUKeep = "keep" // never change MTU
)

// What to do with ENIs other than the primary.
const (
	SecondaryAll  = "all"
	SecondaryNone = "none"
	SecondaryAuto = "auto"
)

// Prefix modes.
const (
	PrefixRules = "rules" // one "from <prefix>" rule per delegated prefix (amazon-ec2-net-utils behaviour)
	PrefixAnyIP = "anyip" // rules plus a local route so the whole prefix answers on the host
)

// Config is every setting ec2net honours.
type Config struct {
	IMDSEndpoint     string // "" = SDK default (env AWS_EC2_METADATA_SERVICE_ENDPOINT, else 169.254.169.254)
	IMDSEndpointMode string // "ipv4" or "ipv6" (fd00:ec2::254)

	ExcludeMACs          []string
	ExcludeENIIDs        []string
	ExcludeDeviceNumbers []int

	SecondaryENIs string // all, none or auto (auto is decided by converge.Resolve)
	ManagePrimary bool   // add the primary ENI's secondary addresses
	MTU           string // "auto", "keep" or a number 576..9216
	PrefixMode    string // "rules" or "anyip"

	RefreshInterval time.Duration // daemon: full IMDS read interval (±10 % jitter)
	RemoveAfter     int           // daemon: successful reads without an address before it is removed
	RemoveAfterTime time.Duration // ... and the least time between the first and the last of them
	PropagationWait time.Duration // how long one read keeps re-reading a pending ENI
	ApplyWait       time.Duration // apply: how long to wait for pending ENIs
	ReadyTimeout    time.Duration // daemon: READY=1 at the latest after this, even if IMDS is dead
	StateDir        string        // root of per-namespace state (/run/ec2net)
	LogLevel        string        // debug, info, warn, error
	MetricsListen   string        // daemon: loopback host:port for GET /metrics; "" off
}

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		IMDSEndpointMode: "ipv4",
		ManagePrimary:    true,
		SecondaryENIs:    SecondaryAuto,
		MTU:              MTUAuto,
		PrefixMode:       PrefixRules,
		RefreshInterval:  60 * time.Second,
		RemoveAfter:      2,
		RemoveAfterTime:  5 * time.Second,
		PropagationWait:  30 * time.Second,
		ApplyWait:        30 * time.Second,
		ReadyTimeout:     20 * time.Second,
		StateDir:         "/run/ec2net",
		LogLevel:         "info",
	}
}

// MTUValue returns the fixed MTU when the policy is a number, else 0.
func (c Config) MTUValue() int {
	n, err := strconv.Atoi(c.MTU)
	if err != nil {
		return 0
	}
	return n
}

// Validate reports the first setting that is not valid, as the file or a
// flag would have: every key's value is printed and parsed again, so a
// Config built in code is held to the same rules as one read from disk.
func (c Config) Validate() error {
	for _, k := range keys() {
		scratch := c
		if err := k.set(&scratch, k.value(&c)); err != nil {
			return fmt.Errorf("%s: %q %v", k.name, k.value(&c), err)
		}
	}
	return nil
}

// Excluded reports whether an ENI is excluded by configuration.
func (c Config) Excluded(mac, eniID string, deviceNumber int) bool {
	for _, m := range c.ExcludeMACs {
		if strings.EqualFold(m, mac) {
			return true
		}
	}
	for _, id := range c.ExcludeENIIDs {
		if id == eniID && id != "" {
			return true
		}
	}
	for _, d := range c.ExcludeDeviceNumbers {
		if d == deviceNumber {
			return true
		}
	}
	return false
}

// key describes one setting: its name (file key and flag name), help, and
// how to parse and print it.
type key struct {
	name  string
	help  string
	set   func(c *Config, v string) error
	value func(c *Config) string
}

// Scope says which commands take a key as a flag (the file holds every
// key whatever the command).
type Scope uint8

const (
	ForRun     Scope = 1 << iota // ec2net run
	ForApply                     // ec2net apply and plan
	ForStatus                    // ec2net status (and doctor)
	ForCleanup                   // ec2net cleanup
)

// scopes is the one table of which command uses which key.
var scopes = map[string]Scope{
	"imds-endpoint":          ForRun | ForApply | ForStatus,
	"imds-endpoint-mode":     ForRun | ForApply | ForStatus,
	"exclude-macs":           ForRun | ForApply | ForStatus,
	"exclude-eni-ids":        ForRun | ForApply | ForStatus,
	"exclude-device-numbers": ForRun | ForApply | ForStatus,
	"secondary-enis":         ForRun | ForApply | ForStatus,
	"manage-primary":         ForRun | ForApply | ForStatus,
	"mtu":                    ForRun | ForApply | ForStatus,
	"prefix-mode":            ForRun | ForApply | ForStatus,
	"refresh-interval":       ForRun,
	"remove-after":           ForRun,
	"remove-after-time":      ForRun | ForApply,
	"propagation-wait":       ForRun,
	"wait":                   ForApply,
	"ready-timeout":          ForRun,
	"state-dir":              ForRun | ForApply | ForStatus | ForCleanup,
	"log-level":              ForRun | ForApply | ForStatus | ForCleanup,
	"metrics-listen":         ForRun,
}

// IsKey reports whether name is a configuration key.
func IsKey(name string) bool { _, ok := scopes[name]; return ok }

// InScope reports whether a key is one of scope's own.
func InScope(name string, s Scope) bool { return scopes[name]&s != 0 }

// KeysFor lists the keys a command takes as flags, in file order.
func KeysFor(s Scope) []string {
	var out []string
	for _, k := range keys() {
		if scopes[k.name]&s != 0 {
			out = append(out, k.name)
		}
	}
	return out
}

// keys is one table of every setting, in the order the file documents
// them: long, but a list, one entry per key, each read on its own.
func keys() []key {
	return []key{
		{"imds-endpoint", "IMDS endpoint URL (default http://169.254.169.254, or $AWS_EC2_METADATA_SERVICE_ENDPOINT)",
			func(c *Config, v string) error {
				if v != "" && !strings.HasPrefix(v, "http://") && !strings.HasPrefix(v, "https://") {
					return fmt.Errorf("must be an http:// URL")
				}
				c.IMDSEndpoint = v
				return nil
			}, func(c *Config) string { return c.IMDSEndpoint }},
		{"imds-endpoint-mode", "ipv4 (169.254.169.254) or ipv6 (fd00:ec2::254)",
			func(c *Config, v string) error {
				if v != "ipv4" && v != "ipv6" {
					return fmt.Errorf("must be ipv4 or ipv6")
				}
				c.IMDSEndpointMode = v
				return nil
			}, func(c *Config) string { return c.IMDSEndpointMode }},
		{"exclude-macs", "comma-separated MACs of ENIs to leave alone",
			func(c *Config, v string) error {
				l, err := parseMACList(v)
				c.ExcludeMACs = l
				return err
			}, func(c *Config) string { return strings.Join(c.ExcludeMACs, ",") }},
		{"exclude-eni-ids", "comma-separated ENI ids (eni-…) to leave alone",
			func(c *Config, v string) error {
				l := splitList(v)
				for _, id := range l {
					if !strings.HasPrefix(id, "eni-") || len(id) < 5 {
						return fmt.Errorf("%q is not an ENI id (eni-…)", id)
					}
				}
				c.ExcludeENIIDs = l
				return nil
			}, func(c *Config) string { return strings.Join(c.ExcludeENIIDs, ",") }},
		{"exclude-device-numbers", "comma-separated device numbers or ranges (2-7) to leave alone",
			func(c *Config, v string) error {
				out, err := parseNumberRanges(v, 0, 99)
				c.ExcludeDeviceNumbers = out
				return err
			}, func(c *Config) string { return formatNumberRanges(c.ExcludeDeviceNumbers) }},
		{"secondary-enis", "all (configure every ENI), none (the primary only: a VPC CNI host hands the others' addresses to pods) or auto (none where the VPC CNI is found, else all)",
			func(c *Config, v string) error {
				switch v {
				case SecondaryAll, SecondaryNone, SecondaryAuto:
					c.SecondaryENIs = v
					return nil
				}
				return fmt.Errorf("must be all, none or auto")
			}, func(c *Config) string { return c.SecondaryENIs }},
		{"manage-primary", "add the primary ENI's secondary addresses (true/false)",
			func(c *Config, v string) error {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return fmt.Errorf("must be true or false")
				}
				c.ManagePrimary = b
				return nil
			}, func(c *Config) string { return strconv.FormatBool(c.ManagePrimary) }},
		{"mtu", "auto (9001 on ena/ixgbevf), keep, or a number 576-9216",
			func(c *Config, v string) error {
				if v == MTUAuto || v == MTUKeep {
					c.MTU = v
					return nil
				}
				n, err := strconv.Atoi(v)
				if err != nil || n < 576 || n > 9216 {
					return fmt.Errorf("must be auto, keep or a number 576-9216")
				}
				c.MTU = v
				return nil
			}, func(c *Config) string { return c.MTU }},
		{"prefix-mode", "rules (a rule per delegated prefix) or anyip (also local routes so the prefix answers)",
			func(c *Config, v string) error {
				if v != PrefixRules && v != PrefixAnyIP {
					return fmt.Errorf("must be rules or anyip")
				}
				c.PrefixMode = v
				return nil
			}, func(c *Config) string { return c.PrefixMode }},
		durationKey("refresh-interval", "daemon: full IMDS read interval (±10 % jitter)", time.Second, 24*time.Hour,
			func(c *Config) *time.Duration { return &c.RefreshInterval }),
		{"remove-after", "daemon: successful IMDS reads no longer listing an address before it is removed (1-10)",
			func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > 10 {
					return fmt.Errorf("must be a number 1-10")
				}
				c.RemoveAfter = n
				return nil
			}, func(c *Config) string { return strconv.Itoa(c.RemoveAfter) }},
		durationKey("remove-after-time", "the least time between the first and the last IMDS read that no longer list an address before it is removed (an inconsistency shorter than this never removes anything)", 0, time.Hour,
			func(c *Config) *time.Duration { return &c.RemoveAfterTime }),
		durationKey("propagation-wait", "how long one read re-reads a pending ENI (backoff 100ms..5s)", 0, 10*time.Minute,
			func(c *Config) *time.Duration { return &c.PropagationWait }),
		durationKey("wait", "apply: how long to wait for pending ENIs", 0, time.Hour,
			func(c *Config) *time.Duration { return &c.ApplyWait }),
		durationKey("ready-timeout", "daemon: send READY=1 after this even if IMDS does not answer", time.Second, 10*time.Minute,
			func(c *Config) *time.Duration { return &c.ReadyTimeout }),
		{"state-dir", "root of ec2net's runtime state (kept per network namespace)",
			func(c *Config, v string) error {
				if !strings.HasPrefix(v, "/") {
					return fmt.Errorf("must be an absolute path")
				}
				c.StateDir = v
				return nil
			}, func(c *Config) string { return c.StateDir }},
		{"log-level", "debug, info, warn or error",
			func(c *Config, v string) error {
				switch v {
				case "debug", "info", "warn", "error":
					c.LogLevel = v
					return nil
				}
				return fmt.Errorf("must be debug, info, warn or error")
			}, func(c *Config) string { return c.LogLevel }},
		{"metrics-listen", "daemon: also serve the Prometheus metrics at http://<this>/metrics, a loopback host:port such as 127.0.0.1:9464 (empty: off; the metrics file /run/ec2net/metrics/<netns>.prom is always written)",
			func(c *Config, v string) error {
				if err := LoopbackHostPort(v); v != "" && err != nil {
					return err
				}
				c.MetricsListen = v
				return nil
			}, func(c *Config) string { return c.MetricsListen }},
	}
}

// LoopbackHostPort accepts host:port on a loopback address: ec2net serves
// metrics to a local scraper, never to the network.
func LoopbackHostPort(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("must be host:port, e.g. 127.0.0.1:9464")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	if host == "localhost" {
		return nil
	}
	if a, err := netip.ParseAddr(host); err != nil || !a.IsLoopback() {
		return fmt.Errorf("must be a loopback address (127.0.0.1, [::1] or localhost), not %q", host)
	}
	return nil
}

func durationKey(name, help string, min, max time.Duration, field func(*Config) *time.Duration) key {
	return key{name, help,
		func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < min || d > max {
				return fmt.Errorf("must be a duration between %v and %v (e.g. 30s)", min, max)
			}
			*field(c) = d
			return nil
		}, func(c *Config) string { return field(c).String() }}
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func parseMACList(v string) ([]string, error) {
	var out []string
	for _, s := range splitList(v) {
		s = strings.ToLower(s)
		if !imds.IsMAC(s) {
			return nil, fmt.Errorf("%q is not a MAC address (aa:bb:cc:dd:ee:ff)", s)
		}
		out = append(out, s)
	}
	return out, nil
}

// Parse reads a configuration file's text over base. name is used in errors.
func Parse(r io.Reader, name string, base Config) (Config, error) {
	c := base
	byName := map[string]key{}
	for _, k := range keys() {
		byName[k.name] = k
	}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		k, v, ok := strings.Cut(text, "=")
		if !ok {
			return c, fmt.Errorf("%s:%d: expected \"key = value\"", name, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		def, ok := byName[k]
		if !ok {
			return c, fmt.Errorf("%s:%d: unknown key %q", name, line, k)
		}
		if err := def.set(&c, v); err != nil {
			return c, fmt.Errorf("%s:%d: %s: %v", name, line, k, err)
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("%s: %v", name, err)
	}
	return c, nil
}

// Load reads path over the defaults, then the drop-ins in path+".d" (see
// DropInDir). A missing file at the default path is not an error (the
// package ships one, but a bare binary works without it).
func Load(path string) (Config, error) {
	c, err := loadFile(path, Default(), path == DefaultPath)
	if err != nil {
		return c, err
	}
	return loadDropIns(DropInDir(path), c)
}

// loadFile parses one file over base; a missing file is base when
// optional.
func loadFile(path string, base Config, optional bool) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) && optional {
			return base, nil
		}
		return base, fmt.Errorf("config: %v", err)
	}
	defer f.Close()
	return Parse(f, path, base)
}

// Flags binds one flag per key to fs. Call Apply after fs.Parse to lay the
// flags that were set over a Config loaded from the file.
type Flags struct {
	set map[string]*string
	fs  *flag.FlagSet
}

// RegisterFlags adds the keys of scope as string flags.
func RegisterFlags(fs *flag.FlagSet, scope Scope) *Flags {
	f := &Flags{set: map[string]*string{}, fs: fs}
	d := Default()
	for _, k := range keys() {
		if scopes[k.name]&scope != 0 {
			f.set[k.name] = fs.String(k.name, k.value(&d), k.help)
		}
	}
	return f
}

// Apply lays the flags that were given explicitly on the command line over c.
func (f *Flags) Apply(c Config) (Config, error) {
	var err error
	f.fs.Visit(func(fl *flag.Flag) {
		if err != nil {
			return
		}
		p, ok := f.set[fl.Name]
		if !ok {
			return
		}
		for _, k := range keys() {
			if k.name == fl.Name {
				if e := k.set(&c, *p); e != nil {
					err = fmt.Errorf("--%s: %v", fl.Name, e)
				}
			}
		}
	})
	return c, err
}

// Keys lists the key names, for documentation and tests.
func Keys() []string {
	var out []string
	for _, k := range keys() {
		out = append(out, k.name)
	}
	sort.Strings(out)
	return out
}

// Render writes c in the file format, every key with its help as a comment.
func Render(c Config) string {
	var b strings.Builder
	for _, k := range keys() {
		fmt.Fprintf(&b, "# %s\n# %s = %s\n\n", k.help, k.name, k.value(&c))
	}
	return b.String()
}
