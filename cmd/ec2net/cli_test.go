package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/ec2net/ec2net/agent/config"
)

func runCLI(args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return o.String(), e.String(), code
}

func TestHelpVersionAndUnknownCommand(t *testing.T) {
	if out, _, code := runCLI("help"); code != 0 || !strings.Contains(out, "ec2net apply") {
		t.Errorf("help: exit %d\n%s", code, out)
	}
	if out, _, code := runCLI("version"); code != 0 || !strings.HasPrefix(out, "ec2net ") {
		t.Errorf("version: exit %d %q", code, out)
	}
	if _, errOut, code := runCLI("frobnicate"); code != 1 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d %q", code, errOut)
	}
	if _, errOut, code := runCLI(); code != 1 || !strings.Contains(errOut, "Usage:") {
		t.Errorf("no command: exit %d %q", code, errOut)
	}
	if out, _, code := runCLI("--version"); code != 0 || !strings.HasPrefix(out, "ec2net ") {
		t.Errorf("--version: exit %d %q", code, out)
	}
}

// `ec2net <cmd> --help` goes to stdout, says what the command does and
// lists only the flags that command takes, and its exit status.
func TestHelpPerCommandOnStdoutWithOnlyItsFlags(t *testing.T) {
	for _, tc := range []struct {
		cmd           string
		want, notWant []string
	}{
		{"run", []string{"--refresh-interval", "--ready-timeout", "--imds-endpoint", "--config"}, []string{"--wait", "--json"}},
		{"apply", []string{"--wait", "--imds-endpoint", "--exclude-macs", "--json"}, []string{"--refresh-interval", "--ready-timeout"}},
		{"plan", []string{"--exit-code", "--wait"}, []string{"--ready-timeout"}},
		{"status", []string{"--json", "--imds-endpoint"}, []string{"--wait", "--refresh-interval"}},
		{"cleanup", []string{"--state-dir", "--config"}, []string{"--imds-endpoint", "--mtu", "--wait"}},
		{"defaults", nil, []string{"--config", "--mtu"}},
	} {
		out, errOut, code := runCLI(tc.cmd, "--help")
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "Usage: ec2net "+tc.cmd) || !strings.Contains(out, "Exit status:") {
			t.Errorf("%s --help: exit %d, stderr %q\n%s", tc.cmd, code, errOut, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w+"\n") {
				t.Errorf("%s --help lacks %s:\n%s", tc.cmd, w, out)
			}
		}
		for _, w := range tc.notWant {
			if strings.Contains(out, w+"\n") {
				t.Errorf("%s --help lists %s, which it does not take", tc.cmd, w)
			}
		}
	}
}

func TestDefaultsPrintsEveryKeyCommented(t *testing.T) {
	out, _, code := runCLI("defaults")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, k := range config.Keys() {
		if !strings.Contains(out, "# "+k+" = ") {
			t.Errorf("defaults lacks %s", k)
		}
	}
}

func TestBadConfigNamesFileLineAndKey(t *testing.T) {
	f := t.TempDir() + "/bad.conf"
	if err := writeFile(f, "mtu = auto\nrefresh-interval = often\n"); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runCLI("plan", "--config", f)
	if code != 1 || !strings.Contains(errOut, f+":2: refresh-interval:") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = runCLI("plan", "--config", "/dev/null", "--mtu", "12")
	if code != 1 || !strings.Contains(errOut, "--mtu") {
		t.Errorf("bad flag: exit %d, stderr %q", code, errOut)
	}
}

func writeFile(path, text string) error {
	return os.WriteFile(path, []byte(text), 0o600)
}
