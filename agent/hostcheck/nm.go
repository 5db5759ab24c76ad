package hostcheck

import (
	"path/filepath"
	"strings"
)

// NetworkManager with its default configuration creates a "Wired
// connection" for every new Ethernet device within milliseconds, runs
// DHCP on it, adds a default and a subnet route through it in main, and
// without a DHCP answer removes every address of the device at its 45 s
// DHCP timeout. `[main] no-auto-default=` covering the secondary ENIs
// stops that (packaging/dropins/README.md: the ec2net package ships
// no-auto-default=except:interface-name:eth0,…).

var nmDropIns = []string{"/usr/lib/NetworkManager/conf.d", "/run/NetworkManager/conf.d", "/etc/NetworkManager/conf.d"}

func networkManager(h *Host) []Finding {
	if !h.running("NetworkManager") {
		return nil
	}
	files := h.confFiles("/etc/NetworkManager/NetworkManager.conf", nmDropIns...)
	noAuto := iniValues(files, "main")["no-auto-default"]
	unmanaged := iniValues(files, "keyfile")["unmanaged-devices"]
	var exposed []Link
	for _, l := range h.secondaries() {
		if !deviceSpecMatches(noAuto, l) && !deviceSpecMatches(unmanaged, l) {
			exposed = append(exposed, l)
		}
	}
	if len(exposed) == 0 {
		return []Finding{{Severity: OK, Check: "networkmanager",
			Text: "NetworkManager runs and makes no automatic connection on the secondary ENIs (no-auto-default)"}}
	}
	return []Finding{{Severity: Problem, Check: "networkmanager", Link: names(exposed),
		Text: "NetworkManager makes an automatic \"Wired connection\" on " + names(exposed) + ": it runs DHCP there, " +
			"adds a default route through each in main, and without a DHCP answer removes all their addresses every 45 s",
		Fix: "set [main] no-auto-default=except:interface-name:<the primary's name> in /etc/NetworkManager/conf.d/ec2net.conf " +
			"(the ec2net package ships it in /usr/lib/NetworkManager/conf.d), then `nmcli general reload conf`; " +
			"connections NetworkManager already made stay until deleted (nmcli connection delete …)"}}
}

// deviceSpecMatches applies a NetworkManager device-spec list
// ("*", "interface-name:eth*", "mac:…", a bare MAC, "except:…"): an
// except: spec that matches excludes the device; with only except: specs
// every other device matches.
func deviceSpecMatches(list string, l Link) bool {
	if strings.TrimSpace(list) == "" {
		return false
	}
	pos, neg, onlyExcept := false, false, true
	for _, spec := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ';' }) {
		spec = strings.TrimSpace(spec)
		except := false
		if s, ok := strings.CutPrefix(spec, "except:"); ok {
			except, spec = true, s
		} else {
			onlyExcept = false
		}
		if specMatches(spec, l) {
			if except {
				neg = true
			} else {
				pos = true
			}
		}
	}
	if neg {
		return false
	}
	return pos || onlyExcept
}

func specMatches(spec string, l Link) bool {
	switch {
	case spec == "*":
		return true
	case strings.HasPrefix(spec, "interface-name:"):
		p := strings.TrimPrefix(spec, "interface-name:")
		if exact, ok := strings.CutPrefix(p, "="); ok {
			return exact == l.Name
		}
		p = strings.TrimPrefix(p, "~")
		ok, _ := filepath.Match(p, l.Name)
		return ok
	case strings.HasPrefix(spec, "mac:"):
		return strings.EqualFold(strings.TrimPrefix(spec, "mac:"), l.MAC)
	case strings.HasPrefix(spec, "driver:"):
		ok, _ := filepath.Match(strings.TrimPrefix(spec, "driver:"), l.Driver)
		return ok && l.Driver != ""
	}
	return strings.EqualFold(spec, l.MAC)
}
