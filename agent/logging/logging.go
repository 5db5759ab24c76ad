// Package logging builds ec2net's zap logger: human-readable console lines
// on a terminal or in CI, and under journald entries sent through the
// native journal protocol with fields (journal.go: INTERFACE=, ENI_ID=,
// MAC=, MESSAGE_ID=) and syslog priorities, so that `journalctl -p err`
// and `journalctl -u ec2net INTERFACE=eth1` work. Where the journal socket
// cannot be used, journald lines start with a priority ("<3>") instead.
//
// Levels: ERROR only for what needs a person (a change the kernel
// refused, a pass that could not run); WARN for what another program did
// to ec2net's configuration (a repair) or a degraded state; INFO for
// every normal state change (attach, detach, an address added).
package logging

import (
	"fmt"
	"io"
	"os"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a logger writing to stderr at level ("debug", "info", "warn",
// "error").
func New(level string) (*zap.Logger, error) {
	underJournal, _ := journal.StderrIsJournalStream()
	if underJournal && journal.Enabled() {
		return NewJournal(level, journal.Send, os.Stderr)
	}
	return NewTo(os.Stderr, level, underJournal)
}

// NewTo is New with the destination and the journald decision made by the
// caller (tests).
func NewTo(w io.Writer, level string, underJournal bool) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %v", level, err)
	}
	enc := zap.NewDevelopmentEncoderConfig()
	enc.CallerKey = ""
	enc.StacktraceKey = ""
	if underJournal {
		// journald stamps each line itself and reads the "<N>" prefix as
		// the syslog priority (SyslogLevelPrefix=yes is the default).
		enc.TimeKey = ""
		enc.EncodeLevel = syslogPriority
		enc.ConsoleSeparator = " "
	} else {
		enc.EncodeTime = zapcore.RFC3339TimeEncoder
		enc.EncodeLevel = zapcore.CapitalLevelEncoder
	}
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(withoutIDs{core}), nil
}

func syslogPriority(l zapcore.Level, enc zapcore.PrimitiveArrayEncoder) {
	enc.AppendString(fmt.Sprintf("<%d>", priority(l)))
}
