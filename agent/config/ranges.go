package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// parseNumberRanges parses "1,3-5,9" into the numbers it names, each in
// lo..hi, sorted, without repeats.
func parseNumberRanges(v string, lo, hi int) ([]int, error) {
	var out []int
	for _, s := range splitList(v) {
		a, b, isRange := strings.Cut(s, "-")
		from, err1 := strconv.Atoi(strings.TrimSpace(a))
		to, err2 := from, error(nil)
		if isRange {
			to, err2 = strconv.Atoi(strings.TrimSpace(b))
		}
		if err1 != nil || err2 != nil || from < lo || to > hi || from > to {
			return nil, fmt.Errorf("%q is not a device number or range (%d-%d)", s, lo, hi)
		}
		for n := from; n <= to; n++ {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// formatNumberRanges prints numbers with runs as ranges: "1,3-5,9".
func formatNumberRanges(ns []int) string {
	var parts []string
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", ns[i], ns[j]))
		} else {
			parts = append(parts, strconv.Itoa(ns[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}
