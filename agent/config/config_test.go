package config

import (
	"flag"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseValidFile(t *testing.T) {
	src := `# comment
exclude-macs = 02:00:00:00:00:AA, 02:00:00:00:00:bb
exclude-device-numbers = 3,4
manage-primary = false   # trailing comment
mtu = 1500
prefix-mode = anyip
refresh-interval = 30s
`
	c, err := Parse(strings.NewReader(src), "x.conf", Default())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ExcludeMACs) != 2 || c.ExcludeMACs[0] != "02:00:00:00:00:aa" || c.ManagePrimary || c.MTUValue() != 1500 ||
		c.PrefixMode != PrefixAnyIP || c.RefreshInterval != 30*time.Second || len(c.ExcludeDeviceNumbers) != 2 {
		t.Fatalf("parsed %+v", c)
	}
	if !c.Excluded("02:00:00:00:00:bb", "", 9) || !c.Excluded("x", "", 4) || c.Excluded("x", "", 5) {
		t.Fatal("Excluded wrong")
	}
}

func TestErrorsNameFileLineAndKey(t *testing.T) {
	for src, want := range map[string]string{
		"\n\nbogus = 1\n":          `f.conf:3: unknown key "bogus"`,
		"mtu = 20\n":               "f.conf:1: mtu: ",
		"refresh-interval = 5\n":   "f.conf:1: refresh-interval: ",
		"exclude-macs = nope\n":    "f.conf:1: exclude-macs: ",
		"just words\n":             "f.conf:1: expected",
		"manage-primary = maybe\n": "f.conf:1: manage-primary: ",
	} {
		_, err := Parse(strings.NewReader(src), "f.conf", Default())
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: err = %v, want prefix %q", src, err, want)
		}
	}
}

func TestEveryKeyHasAFlagAndFlagsOverrideFile(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	f := RegisterFlags(fs, ForRun|ForApply|ForStatus|ForCleanup)
	for _, k := range Keys() {
		if fs.Lookup(k) == nil {
			t.Errorf("no flag for key %s", k)
		}
	}
	if err := fs.Parse([]string{"--mtu", "keep", "--remove-after", "3"}); err != nil {
		t.Fatal(err)
	}
	base := Default()
	base.MTU = "1500"
	c, err := f.Apply(base)
	if err != nil || c.MTU != MTUKeep || c.RemoveAfter != 3 || c.LogLevel != "info" {
		t.Fatalf("Apply = %+v, %v", c, err)
	}
	fs2 := flag.NewFlagSet("y", flag.ContinueOnError)
	f2 := RegisterFlags(fs2, ForRun|ForApply|ForStatus|ForCleanup)
	_ = fs2.Parse([]string{"--mtu", "7"})
	if _, err := f2.Apply(Default()); err == nil || !strings.Contains(err.Error(), "--mtu") {
		t.Fatalf("bad flag value error = %v", err)
	}
}

func TestRenderedDefaultsParseBack(t *testing.T) {
	text := Render(Default())
	// Uncomment every "# key = value" line: the defaults must be valid input.
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "# ") && strings.Contains(line, " = ") {
			line = strings.TrimPrefix(line, "# ")
		}
		b.WriteString(line + "\n")
	}
	if _, err := Parse(strings.NewReader(b.String()), "defaults", Default()); err != nil {
		t.Fatalf("rendered defaults do not parse: %v\n%s", err, b.String())
	}
}

// Every key belongs to at least one command, and each command gets only
// its own.
func TestEveryKeyHasAScope(t *testing.T) {
	for _, k := range Keys() {
		if scopes[k] == 0 {
			t.Errorf("key %s is a flag of no command", k)
		}
	}
	if got := KeysFor(ForCleanup); strings.Join(got, ",") != "state-dir,log-level" {
		t.Errorf("cleanup flags: %v", got)
	}
	for _, k := range KeysFor(ForApply) {
		if k == "refresh-interval" || k == "ready-timeout" {
			t.Errorf("apply takes the daemon's %s", k)
		}
	}
}

func TestDeviceNumberRanges(t *testing.T) {
	c, err := Parse(strings.NewReader("exclude-device-numbers = 2-4, 9, 3\n"), "t", Default())
	if err != nil || !slices.Equal(c.ExcludeDeviceNumbers, []int{2, 3, 4, 9}) {
		t.Fatalf("%v %v", c.ExcludeDeviceNumbers, err)
	}
	if got := formatNumberRanges(c.ExcludeDeviceNumbers); got != "2-4,9" {
		t.Errorf("printed %q", got)
	}
	if !c.Excluded("02:00:00:00:00:01", "", 3) || c.Excluded("02:00:00:00:00:01", "", 5) {
		t.Error("range not honoured")
	}
	for _, bad := range []string{"4-2", "1-100", "x", "-1"} {
		if _, err := Parse(strings.NewReader("exclude-device-numbers = "+bad+"\n"), "t", Default()); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
