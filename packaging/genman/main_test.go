package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
)

// The committed man pages, configuration file and completions are what the
// generator makes from agent/config now: a key added, renamed or
// re-documented without `go run ./packaging/genman` fails here.
func TestCommittedFilesAreGenerated(t *testing.T) {
	stale, err := Stale("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range stale {
		t.Errorf("%s differs from what genman generates: run go run ./packaging/genman", p)
	}
}

// Every key appears as an option in ec2net(8), as a key in ec2net.conf(5)
// and in both completions; and the check really fails on a stale file.
func TestEveryKeyEverywhere(t *testing.T) {
	files, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range config.Keys() {
		r := roff(k)
		for path, want := range map[string]string{
			"packaging/ec2net.8":                `.BI \-\-` + r + ` " value"`,
			"packaging/ec2net.conf.5":           ".BI " + r + ` " = value"`,
			"packaging/ec2net.conf":             "# " + k + " =",
			"packaging/completions/ec2net.bash": " --" + k,
			"packaging/completions/_ec2net":     "'--" + k + "=[",
		} {
			if !strings.Contains(string(files[path]), want) {
				t.Errorf("%s lacks %q", path, want)
			}
		}
	}
	root := t.TempDir()
	for path, data := range files {
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if stale, err := Stale(root); err != nil || len(stale) != 0 {
		t.Fatalf("fresh output is stale: %v %v", stale, err)
	}
	bad := filepath.Join(root, "packaging/ec2net.8")
	if err := os.WriteFile(bad, append(files["packaging/ec2net.8"], ".\\\" edited\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if stale, _ := Stale(root); len(stale) != 1 || stale[0] != "packaging/ec2net.8" {
		t.Errorf("an edited ec2net.8 is not reported stale: %v", stale)
	}
}

// The pages format without warnings (man --warnings), when man is here.
func TestManPagesFormatCleanly(t *testing.T) {
	if _, err := exec.LookPath("man"); err != nil {
		if nstest.InCI() {
			t.Fatal("man is not installed (apt-get install man-db)")
		}
		t.Skip("man is not installed")
	}
	for _, page := range []string{"../ec2net.8", "../ec2net.conf.5"} {
		cmd := exec.Command("man", "--warnings", "-l", page)
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "LC_ALL=C.UTF-8")
		cmd.Stdout = nil
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("man -l %s: %v\n%s", page, err, out)
			continue
		}
		// Warnings go to stderr interleaved; groff prefixes them.
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "warning:") || strings.Contains(l, "troff:") {
				t.Errorf("%s: %s", page, l)
			}
		}
	}
}

// The bash completion completes commands, then the options of the command
// given (a configuration key, --config, a command's own flag), and nothing
// after an option that takes a value.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash is not installed")
	}
	complete := func(words ...string) string {
		t.Helper()
		script := `source ../completions/ec2net.bash
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _ec2net; printf '%s\n' "${COMPREPLY[@]}"`
		out, err := exec.Command(bash, append([]string{"-c", script, "bash"}, words...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("complete %q: %v\n%s", words, err, out)
		}
		return strings.Join(strings.Fields(string(out)), " ")
	}
	for _, c := range []struct {
		words []string
		want  string
	}{
		{[]string{"ec2net", "st"}, "status"},
		{[]string{"ec2net", "apply", "--mt"}, "--mtu"},
		{[]string{"ec2net", "status", "--js"}, "--json"},
		{[]string{"ec2net", "plan", "--exit"}, "--exit-code"},
		{[]string{"ec2net", "apply", "--js"}, "--json"},
		{[]string{"ec2net", "cleanup", "--mt"}, ""},
		{[]string{"ec2net", "apply", "--ready"}, ""},
		{[]string{"ec2net", "apply", "--mtu", "--"}, ""},
		{[]string{"ec2net", "defaults", "--con"}, ""},
	} {
		if got := complete(c.words...); got != c.want {
			t.Errorf("complete %q = %q, want %q", c.words, got, c.want)
		}
	}
}

// The zsh completion parses (zsh -n), where zsh is installed (make test's
// scripts/test-deps.sh installs it).
func TestZshCompletionParses(t *testing.T) {
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		if nstest.InCI() {
			t.Fatal("zsh is not installed (apt-get install zsh)")
		}
		t.Skip("zsh is not installed")
	}
	if out, err := exec.Command(zsh, "-n", "../completions/_ec2net").CombinedOutput(); err != nil {
		t.Errorf("zsh -n _ec2net: %v\n%s", err, out)
	}
}

// Every command the man page and the completions list is one the program
// accepts: "ec2net <command> --help" (or the command itself, for those
// without options) exits 0, and an unknown command does not.
func TestCommandsExistInTheProgram(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "ec2net")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/ec2net").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, c := range commands {
		args := []string{c.Name}
		if c.Keys() {
			args = append(args, "--help")
		}
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Errorf("ec2net %s: %v (genman lists a command the program does not have)\n%s", strings.Join(args, " "), err, out)
		}
	}
	if err := exec.Command(bin, "no-such-command").Run(); err == nil {
		t.Error("an unknown command exits 0: this check proves nothing")
	}
}
