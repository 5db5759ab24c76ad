package config

// KeyDoc documents one configuration key: its name (file key and flag), the
// one-line help that `ec2net defaults` and --help print, and its default
// value in the file's syntax ("" when empty).
type KeyDoc struct {
	Name    string
	Help    string
	Default string
}

// KeyDocs lists every key in the order of `ec2net defaults`, for generated
// documentation (man pages, shell completion): one source, so they cannot
// drift from the program.
func KeyDocs() []KeyDoc {
	d := Default()
	var out []KeyDoc
	for _, k := range keys() {
		out = append(out, KeyDoc{Name: k.name, Help: k.help, Default: k.value(&d)})
	}
	return out
}
