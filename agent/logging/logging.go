// Package logging builds ec2net's zap logger: human-readable console lines
// on a terminal or in CI, and under journald lines without timestamps that
// start with a syslog priority ("<3>") so that `journalctl -p err` works.
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
	return zap.New(core), nil
}

func syslogPriority(l zapcore.Level, enc zapcore.PrimitiveArrayEncoder) {
	p := 6 // info
	switch {
	case l <= zapcore.DebugLevel:
		p = 7
	case l == zapcore.InfoLevel:
		p = 6
	case l == zapcore.WarnLevel:
		p = 4
	case l == zapcore.ErrorLevel:
		p = 3
	default:
		p = 2
	}
	enc.AppendString(fmt.Sprintf("<%d>", p))
}
