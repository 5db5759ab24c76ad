package logging

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Under journald, entries go through the native journal protocol with
// fields an operator can filter and alert on:
//
//	journalctl -u ec2net INTERFACE=eth1
//	journalctl -u ec2net ENI_ID=eni-0123456789abcdef0
//	journalctl -u ec2net MESSAGE_ID=e96b5812ec754d029a34f2d1247c2455   (an address off its path)
//
// The zap fields "link", "mac" and "eni" become INTERFACE, MAC and ENI_ID
// (INTERFACE= is the field systemd's own network tools use); "message_id"
// (ID) or the message itself (ids.go) gives MESSAGE_ID; every other field
// becomes an upper-case field of its own (change → CHANGE, error → ERROR)
// and is also appended to MESSAGE as key=value, so that the plain
// `journalctl -u ec2net` stays readable.

// Sender sends one journal entry (journal.Send; tests record instead).
type Sender func(message string, priority journal.Priority, vars map[string]string) error

// NewJournal returns a logger sending through send at level. fallback
// receives the entry as a "<N>"-prefixed line when send fails (journald
// restarting): nothing is lost.
func NewJournal(level string, send Sender, fallback io.Writer) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %v", level, err)
	}
	return zap.New(&journalCore{LevelEnabler: lvl, send: send, fallback: zapcore.AddSync(fallback)}), nil
}

type journalCore struct {
	zapcore.LevelEnabler
	send     Sender
	fallback zapcore.WriteSyncer
	fields   []zapcore.Field
}

func (c *journalCore) With(fs []zapcore.Field) zapcore.Core {
	cp := *c
	cp.fields = append(append([]zapcore.Field{}, c.fields...), fs...)
	return &cp
}

func (c *journalCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *journalCore) Sync() error { return nil }

func (c *journalCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	msg, vars := journalEntry(e, append(append([]zapcore.Field{}, c.fields...), fs...))
	pri := journal.Priority(priority(e.Level))
	if err := c.send(msg, pri, vars); err != nil {
		_, werr := fmt.Fprintf(c.fallback, "<%d> %s\n", pri, msg)
		return werr
	}
	return nil
}

// journalEntry builds MESSAGE and the other fields of one entry.
func journalEntry(e zapcore.Entry, fs []zapcore.Field) (string, map[string]string) {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fs {
		f.AddTo(enc)
	}
	vars := map[string]string{"SYSLOG_IDENTIFIER": "ec2net"}
	if e.LoggerName != "" {
		vars["LOGGER"] = e.LoggerName
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(e.Message)
	for _, k := range keys {
		v := fmt.Sprint(enc.Fields[k])
		if k == messageIDKey {
			vars["MESSAGE_ID"] = v
			continue
		}
		if v == "" {
			continue
		}
		vars[fieldName(k)] = v
		b.WriteString(" " + k + "=" + quote(v))
	}
	if _, ok := vars["MESSAGE_ID"]; !ok {
		if id := idFor(e.Message); id != "" {
			vars["MESSAGE_ID"] = id
		}
	}
	return b.String(), vars
}

// fieldName is the journal field for a zap key: the three ENI keys by
// their documented names, others upper-cased ([A-Z0-9_], not starting
// with "_"), and names systemd gives a meaning prefixed with EC2NET_.
func fieldName(k string) string {
	switch k {
	case "link":
		return "INTERFACE"
	case "mac":
		return "MAC"
	case "eni":
		return "ENI_ID"
	}
	var b strings.Builder
	for _, r := range strings.ToUpper(k) {
		if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	n := strings.TrimLeft(b.String(), "_")
	if n == "" || reserved[n] || n[0] >= '0' && n[0] <= '9' {
		n = "EC2NET_" + n
	}
	return n
}

// reserved are fields journald or systemd give a meaning.
var reserved = map[string]bool{"MESSAGE": true, "MESSAGE_ID": true, "PRIORITY": true, "CODE_FILE": true,
	"CODE_LINE": true, "CODE_FUNC": true, "ERRNO": true, "INVOCATION_ID": true, "USER_INVOCATION_ID": true,
	"SYSLOG_FACILITY": true, "SYSLOG_IDENTIFIER": true, "SYSLOG_PID": true, "SYSLOG_TIMESTAMP": true,
	"SYSLOG_RAW": true, "DOCUMENTATION": true, "TID": true, "UNIT": true, "USER_UNIT": true,
	"INTERFACE": true, "MAC": true, "ENI_ID": true, "LOGGER": true}

func quote(s string) string {
	if strings.ContainsAny(s, " \t\n\"=") {
		return strconv.Quote(s)
	}
	return s
}

// priority is the syslog priority of a zap level.
func priority(l zapcore.Level) int {
	switch {
	case l <= zapcore.DebugLevel:
		return 7
	case l == zapcore.InfoLevel:
		return 6
	case l == zapcore.WarnLevel:
		return 4
	case l == zapcore.ErrorLevel:
		return 3
	}
	return 2
}

// withoutIDs drops the message_id field from a console core: the IDs
// are for the journal; a terminal shows people the message.
type withoutIDs struct{ zapcore.Core }

func (c withoutIDs) With(fs []zapcore.Field) zapcore.Core { return withoutIDs{c.Core.With(dropID(fs))} }

func (c withoutIDs) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c withoutIDs) Write(e zapcore.Entry, fs []zapcore.Field) error {
	return c.Core.Write(e, dropID(fs))
}

func dropID(fs []zapcore.Field) []zapcore.Field {
	out := fs[:0:0]
	for _, f := range fs {
		if f.Key != messageIDKey {
			out = append(out, f)
		}
	}
	return out
}
