package config

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// DropInSuffix is what a drop-in file's name ends with; other names in the
// directory (editor backups, dpkg's .dpkg-old, rpm's .rpmsave) are ignored.
const DropInSuffix = ".conf"

// DropInDir is the drop-in directory of a configuration file:
// /etc/ec2net/ec2net.conf.d for /etc/ec2net/ec2net.conf. Its *.conf files
// are read after the file itself, in lexical order of their names, each
// over the result of the ones before: a key set in a later file wins, and
// a list key (exclude-*) is replaced, not appended to. They exist so that
// cloud-init user data, configuration management and images can add
// settings without editing the packaged file, which stays the package's
// (dpkg never asks about it on upgrade, rpm never writes .rpmnew).
func DropInDir(path string) string { return path + ".d" }

// DropIns lists the drop-in files of dir in the order they are read. A
// missing directory has none.
func DropIns(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: %v", err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, DropInSuffix) || strings.HasPrefix(name, ".") || e.IsDir() {
			continue
		}
		files = append(files, filepath.Join(dir, name))
	}
	sort.Strings(files) // ReadDir sorts already; the order is the contract
	return files, nil
}

// loadDropIns lays every drop-in of dir over c, in order.
func loadDropIns(dir string, c Config) (Config, error) {
	files, err := DropIns(dir)
	if err != nil {
		return c, err
	}
	for _, f := range files {
		if c, err = loadFile(f, c, false); err != nil {
			return c, err
		}
	}
	return c, nil
}
