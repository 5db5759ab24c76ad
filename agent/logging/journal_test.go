package logging

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap"
)

type sent struct {
	msg  string
	pri  journal.Priority
	vars map[string]string
}

func recorder(out *[]sent) Sender {
	return func(m string, p journal.Priority, v map[string]string) error {
		*out = append(*out, sent{m, p, v})
		return nil
	}
}

func TestJournalFields(t *testing.T) {
	var got []sent
	l, err := NewJournal("info", recorder(&got), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	l = l.Named("daemon")
	l.Info("configured", zap.String("link", "eth1"), zap.String("mac", "02:00:00:00:01:01"),
		zap.String("eni", "eni-0123"), zap.String("change", "ip -4 addr add 100.64.2.10/24 dev eth1"))
	l.Warn("address off its path: x", zap.String("link", "eth2"), ID(MsgPathBroken), zap.Error(errors.New("boom")))
	l.Debug("hidden")
	if len(got) != 2 {
		t.Fatalf("%d entries: %+v", len(got), got)
	}
	e := got[0]
	for k, want := range map[string]string{"INTERFACE": "eth1", "MAC": "02:00:00:00:01:01", "ENI_ID": "eni-0123",
		"MESSAGE_ID": MsgConfigured, "CHANGE": "ip -4 addr add 100.64.2.10/24 dev eth1", "SYSLOG_IDENTIFIER": "ec2net",
		"LOGGER": "daemon"} {
		if e.vars[k] != want {
			t.Errorf("%s=%q, want %q (%v)", k, e.vars[k], want, e.vars)
		}
	}
	if e.pri != journal.PriInfo || !strings.HasPrefix(e.msg, "configured ") || !strings.Contains(e.msg, `change="ip -4 addr`) || !strings.Contains(e.msg, "link=eth1") {
		t.Errorf("first entry %+v", e)
	}
	e = got[1]
	if e.pri != journal.PriWarning || e.vars["MESSAGE_ID"] != MsgPathBroken || e.vars["ERROR"] != "boom" || strings.Contains(e.msg, MsgPathBroken) {
		t.Errorf("second entry %+v", e)
	}
	for _, s := range got {
		for k := range s.vars {
			if !regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`).MatchString(k) {
				t.Errorf("invalid journal field name %q", k)
			}
		}
	}
}

func TestJournalFallsBackToPriorityLines(t *testing.T) {
	var b bytes.Buffer
	l, _ := NewJournal("info", func(string, journal.Priority, map[string]string) error { return errors.New("no socket") }, &b)
	l.Error("change failed", zap.String("link", "eth1"))
	if !strings.HasPrefix(b.String(), "<3> change failed link=eth1") {
		t.Errorf("fallback %q", b.String())
	}
}

func TestFieldNames(t *testing.T) {
	for k, want := range map[string]string{"link": "INTERFACE", "deletions_seen": "DELETIONS_SEEN", "error": "ERROR",
		"errno": "EC2NET_ERRNO", "message": "EC2NET_MESSAGE", "_x": "X", "2x": "EC2NET_2X", "next-repair": "NEXT_REPAIR"} {
		if got := fieldName(k); got != want {
			t.Errorf("fieldName(%q) = %q, want %q", k, got, want)
		}
	}
}

// The console shows people the message, not the journal's IDs.
func TestConsoleHidesMessageIDs(t *testing.T) {
	var b bytes.Buffer
	l, _ := NewTo(&b, "info", false)
	l.Info("every address back on its path", ID(MsgPathRestored), zap.String("link", "eth1"))
	if strings.Contains(b.String(), "message_id") || !strings.Contains(b.String(), "eth1") {
		t.Errorf("console line %q", b.String())
	}
}

// Every message the ID table names is still logged somewhere: a reworded
// message would silently lose its MESSAGE_ID.
func TestMessageIDTableNamesRealMessages(t *testing.T) {
	var src strings.Builder
	for _, dir := range []string{"../daemon", "../../netconf", "../imds", "../hostcheck"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src.Write(b)
		}
	}
	seen := map[string]bool{}
	for _, m := range byMessage {
		if !strings.Contains(src.String(), `"`+m.text) {
			t.Errorf("no code logs %q any more: update ids.go", m.text)
		}
		seen[m.id] = true
	}
	for _, id := range []string{MsgStarting, MsgLinkRemoved, MsgRepaired, MsgChangeFailed} {
		if !seen[id] {
			t.Errorf("%s has no message", id)
		}
	}
}
