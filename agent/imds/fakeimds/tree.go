package fakeimds

import (
	"fmt"
	"sort"
	"strings"
)

// node is one entry of the metadata tree: a leaf (children == nil) holding
// its text, or a directory.
type node struct {
	value    string
	children map[string]*node
}

func newDir() *node { return &node{children: map[string]*node{}} }

func (n *node) isDir() bool { return n.children != nil }

// nodeFromJSON converts the imds-trees JSON shape: object = directory,
// string = leaf. Lists become newline-separated leaves and other scalars
// their text, so hand-written trees in tests stay short.
func nodeFromJSON(v any) *node {
	switch v := v.(type) {
	case map[string]any:
		d := newDir()
		for k, c := range v {
			d.children[k] = nodeFromJSON(c)
		}
		return d
	case map[string]string:
		d := newDir()
		for k, c := range v {
			d.children[k] = &node{value: c}
		}
		return d
	case string:
		return &node{value: v}
	case []string:
		return &node{value: strings.Join(v, "\n")}
	case []any:
		parts := make([]string, len(v))
		for i, p := range v {
			parts[i] = fmt.Sprint(p)
		}
		return &node{value: strings.Join(parts, "\n")}
	case nil:
		return &node{}
	default:
		return &node{value: fmt.Sprint(v)}
	}
}

// splitPath turns "a/b/c/" into [a b c]. ok is false for empty segments in
// the middle ("a//b"), which IMDS does not resolve either.
func splitPath(p string) (segs []string, ok bool) {
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return nil, true
	}
	segs = strings.Split(p, "/")
	for _, s := range segs {
		if s == "" {
			return nil, false
		}
	}
	return segs, true
}

// lookup walks segs from n; nil when any part is missing or a leaf is
// walked through.
func (n *node) lookup(segs []string) *node {
	cur := n
	for _, s := range segs {
		if !cur.isDir() {
			return nil
		}
		next, ok := cur.children[s]
		if !ok {
			return nil
		}
		cur = next
	}
	return cur
}

// mkdirs returns the directory at segs, creating directories (and
// replacing leaves in the way) as needed.
func (n *node) mkdirs(segs []string) *node {
	cur := n
	for _, s := range segs {
		next, ok := cur.children[s]
		if !ok || !next.isDir() {
			next = newDir()
			cur.children[s] = next
		}
		cur = next
	}
	return cur
}

// set writes a leaf at segs (len(segs) >= 1).
func (n *node) set(segs []string, value string) {
	dir := n.mkdirs(segs[:len(segs)-1])
	dir.children[segs[len(segs)-1]] = &node{value: value}
}

// remove deletes the entry at segs, leaf or directory.
func (n *node) remove(segs []string) {
	if len(segs) == 0 {
		return
	}
	dir := n.lookup(segs[:len(segs)-1])
	if dir == nil || !dir.isDir() {
		return
	}
	delete(dir.children, segs[len(segs)-1])
}

// listing renders a directory as IMDS does: children sorted in text order,
// one per line, sub-directories with a trailing slash, no final newline.
// skip hides children (keys that have not propagated yet).
func (n *node) listing(skip func(name string) bool) string {
	names := make([]string, 0, len(n.children))
	for name, c := range n.children {
		if skip != nil && skip(name) {
			continue
		}
		if c.isDir() {
			name += "/"
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return strings.Join(names, "\n")
}

// lines splits a multi-valued leaf; an absent or empty leaf has none.
func lines(n *node) []string {
	if n == nil || n.isDir() {
		return nil
	}
	var out []string
	for _, l := range strings.Split(n.value, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
