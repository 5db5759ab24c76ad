package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeConf(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Drop-ins are read after the main file, in lexical order, each over the
// ones before; other names in the directory are ignored.
func TestDropInsOverrideInLexicalOrder(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "ec2net.conf")
	writeConf(t, main, "mtu = 1500\nlog-level = warn\nexclude-device-numbers = 1\n")
	d := DropInDir(main)
	writeConf(t, filepath.Join(d, "50-cloud-init.conf"), "exclude-device-numbers = 3, 4\nlog-level = debug\n")
	writeConf(t, filepath.Join(d, "90-site.conf"), "log-level = error\n")
	writeConf(t, filepath.Join(d, "10-image.conf"), "mtu = keep\nlog-level = info\n")
	// Not drop-ins: wrong suffix, hidden, a directory.
	writeConf(t, filepath.Join(d, "99-old.conf.dpkg-old"), "bogus = 1\n")
	writeConf(t, filepath.Join(d, "99-x.conf.rpmsave"), "bogus = 1\n")
	writeConf(t, filepath.Join(d, ".99-hidden.conf"), "bogus = 1\n")
	writeConf(t, filepath.Join(d, "sub.conf", "inner.conf"), "bogus = 1\n")

	files, err := DropIns(d)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	if want := []string{"10-image.conf", "50-cloud-init.conf", "90-site.conf"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("DropIns = %v, want %v", names, want)
	}
	c, err := Load(main)
	if err != nil {
		t.Fatal(err)
	}
	if c.MTU != MTUKeep || c.LogLevel != "error" || !reflect.DeepEqual(c.ExcludeDeviceNumbers, []int{3, 4}) ||
		c.RefreshInterval != 60*time.Second {
		t.Errorf("Load with drop-ins = mtu %q, log-level %q, exclude-device-numbers %v, refresh-interval %v; "+
			"want keep, error, [3 4] (replaced, not appended), 1m0s", c.MTU, c.LogLevel, c.ExcludeDeviceNumbers, c.RefreshInterval)
	}
}

// An error in a drop-in names the drop-in file and line.
func TestDropInErrorNamesFile(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "ec2net.conf")
	writeConf(t, main, "# nothing\n")
	bad := filepath.Join(DropInDir(main), "20-bad.conf")
	writeConf(t, bad, "\nmtu = 20\n")
	_, err := Load(main)
	if err == nil || !strings.HasPrefix(err.Error(), bad+":2: mtu: ") {
		t.Fatalf("err = %v, want it to name %s:2", err, bad)
	}
}

// No directory, or an empty one: the main file alone. A named file that
// is missing is still an error even when its drop-in directory exists.
func TestDropInDirOptional(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "ec2net.conf")
	writeConf(t, main, "mtu = 1500\n")
	c, err := Load(main)
	if err != nil || c.MTU != "1500" {
		t.Fatalf("no drop-in dir: %+v, %v", c, err)
	}
	if err := os.Mkdir(DropInDir(main), 0o755); err != nil {
		t.Fatal(err)
	}
	if c, err = Load(main); err != nil || c.MTU != "1500" {
		t.Fatalf("empty drop-in dir: %+v, %v", c, err)
	}
	missing := filepath.Join(dir, "other.conf")
	writeConf(t, filepath.Join(DropInDir(missing), "10.conf"), "mtu = keep\n")
	if _, err := Load(missing); err == nil {
		t.Fatalf("Load(%s) of a missing named file succeeded", missing)
	}
}

func TestKeyDocsMatchKeysAndDefaults(t *testing.T) {
	docs := KeyDocs()
	if len(docs) != len(Keys()) {
		t.Fatalf("%d docs for %d keys", len(docs), len(Keys()))
	}
	var b strings.Builder
	for _, d := range docs {
		if d.Help == "" {
			t.Errorf("key %s has no help", d.Name)
		}
		b.WriteString(d.Name + " = " + d.Default + "\n")
	}
	c, err := Parse(strings.NewReader(b.String()), "docs", Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("KeyDocs defaults parse to %+v, want %+v", c, Default())
	}
}
