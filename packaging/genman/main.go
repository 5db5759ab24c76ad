// Command genman writes ec2net's generated documentation from the same key
// list as `ec2net defaults` (agent/config.KeyDocs), so that the man pages,
// the packaged configuration file and the shell completions cannot drift
// from the program:
//
//	packaging/ec2net.8             ec2net(8): commands, options, exit status, …
//	packaging/ec2net.conf.5        ec2net.conf(5): the file and its drop-ins
//	packaging/ec2net.conf          the packaged, all-commented configuration
//	packaging/completions/ec2net.bash, packaging/completions/_ec2net
//
// Run from the repository root: `go run ./packaging/genman` writes them;
// `go run ./packaging/genman -check` fails if a committed file differs (the
// test in this directory does the same). The prose is in the *.tmpl files
// beside this one; the command list is commands below.
package main

import (
	"bytes"
	"embed"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/ec2net/ec2net/agent/config"
)

//go:embed *.tmpl
var templates embed.FS

// command is one ec2net subcommand as the man page and completions list it.
type command struct {
	Name    string
	Summary string       // one line, for completion descriptions
	Flags   []flagDoc    // flags of its own, beyond --config, --help and the keys
	Scope   config.Scope // the configuration keys it uses (0: it reads no configuration)
}

// Keys reports whether the command reads the configuration (--config).
func (c command) Keys() bool { return c.Scope != 0 }

// OwnKeys are the keys the command uses, as its --help lists them (it
// accepts the others too, and ignores them).
func (c command) OwnKeys() []string { return config.KeysFor(c.Scope) }

// flagDoc is a command's own flag; File marks one that takes a file name.
type flagDoc struct {
	Name, Help string
	File       bool
}

// commands is every subcommand; keep in step with cmd/ec2net.
var commands = []command{
	{"run", "run the daemon: converge now, then on link events, every refresh and repair", nil, config.ForRun},
	{"apply", "converge once, waiting --wait for pending ENIs", []flagDoc{{Name: "json", Help: "print JSON"}}, config.ForApply},
	{"plan", "print what apply would change; change nothing",
		[]flagDoc{{Name: "json", Help: "print JSON"}, {Name: "exit-code", Help: "exit 2 when there are changes to make"}}, config.ForApply},
	{"status", "one row per ENI: IMDS against the kernel", []flagDoc{{Name: "json", Help: "print JSON"}}, config.ForStatus},
	{"doctor", "check everything that makes ENIs work, one line per finding with what to do",
		[]flagDoc{{Name: "json", Help: "print JSON"}, {Name: "bundle", Help: "write a support tarball to FILE", File: true}}, config.ForStatus},
	{"cleanup", "remove everything ec2net added, and nothing else", nil, config.ForCleanup},
	{"defaults", "print the default configuration file", nil, 0},
	{"version", "print the version", nil, 0},
	{"help", "print the usage", nil, 0},
}

// outputs maps each generated file (relative to the repository) to its
// template.
var outputs = []struct{ path, tmpl string }{
	{"packaging/ec2net.8", "ec2net.8.tmpl"},
	{"packaging/ec2net.conf.5", "ec2net.conf.5.tmpl"},
	{"packaging/ec2net.conf", "ec2net.conf.tmpl"},
	{"packaging/completions/ec2net.bash", "ec2net.bash.tmpl"},
	{"packaging/completions/_ec2net", "_ec2net.tmpl"},
}

type data struct {
	Keys     []config.KeyDoc
	Commands []command
	Default  string // config.DefaultPath
	DropIn   string // its drop-in directory
	Rendered string // config.Render(config.Default())
}

var funcs = template.FuncMap{
	"roff": roff,
	// zsh quotes a description for _arguments' [...] or _describe's
	// name:description inside single quotes.
	"zsh": func(s string) string {
		return strings.NewReplacer("[", `\[`, "]", `\]`, "'", `'\''`).Replace(s)
	},
}

// roff escapes text for a man page: backslashes, minus signs (so options
// can be copied), a leading control character, and the few non-ASCII
// characters the help texts use.
func roff(s string) string {
	s = strings.NewReplacer(`\`, `\e`, "-", `\-`, "…", "...", "±", `\(+-`, "·", `\(md`, "×", `\(mu`).Replace(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// Generate returns every generated file's content by path.
func Generate() (map[string][]byte, error) {
	t, err := template.New("").Funcs(funcs).ParseFS(templates, "*.tmpl")
	if err != nil {
		return nil, err
	}
	d := data{Keys: config.KeyDocs(), Commands: commands, Default: config.DefaultPath,
		DropIn: config.DropInDir(config.DefaultPath), Rendered: config.Render(config.Default())}
	out := map[string][]byte{}
	for _, o := range outputs {
		var b bytes.Buffer
		if err := t.ExecuteTemplate(&b, o.tmpl, d); err != nil {
			return nil, err
		}
		out[o.path] = trimTrailingSpace(b.Bytes())
	}
	return out, nil
}

func trimTrailingSpace(b []byte) []byte {
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t")
	}
	return []byte(strings.Join(lines, "\n"))
}

// Stale lists the generated files under root that differ from Generate.
func Stale(root string) ([]string, error) {
	files, err := Generate()
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, o := range outputs {
		got, err := os.ReadFile(filepath.Join(root, o.path))
		if err != nil || !bytes.Equal(got, files[o.path]) {
			stale = append(stale, o.path)
		}
	}
	return stale, nil
}

func main() {
	check := flag.Bool("check", false, "only report generated files that differ; exit 1 if any")
	root := flag.String("root", ".", "repository root")
	flag.Parse()
	if *check {
		stale, err := Stale(*root)
		if err != nil {
			fmt.Fprintln(os.Stderr, "genman:", err)
			os.Exit(1)
		}
		for _, p := range stale {
			fmt.Fprintf(os.Stderr, "genman: %s is out of date: run go run ./packaging/genman\n", p)
		}
		if len(stale) > 0 {
			os.Exit(1)
		}
		return
	}
	files, err := Generate()
	if err != nil {
		fmt.Fprintln(os.Stderr, "genman:", err)
		os.Exit(1)
	}
	for _, o := range outputs {
		p := filepath.Join(*root, o.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "genman:", err)
			os.Exit(1)
		}
		if err := os.WriteFile(p, files[o.path], 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "genman:", err)
			os.Exit(1)
		}
	}
}
