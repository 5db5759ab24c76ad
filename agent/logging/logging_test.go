package logging

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

func TestJournaldLinesCarryPriorityAndNoTimestamp(t *testing.T) {
	var b bytes.Buffer
	l, err := NewTo(&b, "debug", true)
	if err != nil {
		t.Fatal(err)
	}
	l.Error("boom")
	l.Info("hello")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "<3> boom") || !strings.HasPrefix(lines[1], "<6> hello") {
		t.Fatalf("journald lines = %q", lines)
	}
}

func TestConsoleLinesHaveTimestamps(t *testing.T) {
	var b bytes.Buffer
	l, _ := NewTo(&b, "info", false)
	l.Debug("hidden")
	l.Info("shown")
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT.*INFO\s+shown`).MatchString(b.String()) {
		t.Fatalf("console line = %q", b.String())
	}
}

func TestBadLevel(t *testing.T) {
	if _, err := NewTo(&bytes.Buffer{}, "loud", false); err == nil {
		t.Fatal("want error for bad level")
	}
}
