package natsbox

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats-server/v2/server"
)

// LevelTrace is the slog level of the embedded server's protocol trace
// (every message it routes). It sits below [slog.LevelDebug] so that debug
// logging does not turn on a flood of trace lines; the server traces only when
// the logger is enabled at this level.
const LevelTrace = slog.LevelDebug - 4

// serverLogger adapts the embedded server's [server.Logger] to slog:
// Noticef → Info, Warnf → Warn, Errorf and Fatalf → Error, Debugf → Debug,
// Tracef → [LevelTrace]. It also remembers the first fatal and the last error
// message so StartServer can explain a failed start. Fatalf never exits the
// process: the server returns from Start by itself after a fatal error.
type serverLogger struct {
	log   *slog.Logger
	fatal chan string // capacity 1: the first fatal message

	mu      sync.Mutex
	lastErr string
}

var _ server.Logger = (*serverLogger)(nil)

func newServerLogger(log *slog.Logger) *serverLogger {
	return &serverLogger{log: log.With("component", "nats-server"), fatal: make(chan string, 1)}
}

func (l *serverLogger) emit(level slog.Level, format string, v []any) string {
	if !l.log.Enabled(context.Background(), level) && level < slog.LevelError {
		return ""
	}
	msg := fmt.Sprintf(format, v...)
	l.log.Log(context.Background(), level, msg)
	return msg
}

// Noticef logs at Info.
func (l *serverLogger) Noticef(format string, v ...any) { l.emit(slog.LevelInfo, format, v) }

// Warnf logs at Warn.
func (l *serverLogger) Warnf(format string, v ...any) { l.emit(slog.LevelWarn, format, v) }

// Errorf logs at Error and remembers the message.
func (l *serverLogger) Errorf(format string, v ...any) {
	msg := l.emit(slog.LevelError, format, v)
	l.mu.Lock()
	l.lastErr = msg
	l.mu.Unlock()
}

// Fatalf logs at Error and reports the first fatal message to StartServer.
func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := l.emit(slog.LevelError, format, v)
	l.mu.Lock()
	l.lastErr = msg
	l.mu.Unlock()
	select {
	case l.fatal <- msg:
	default:
	}
}

// Debugf logs at Debug.
func (l *serverLogger) Debugf(format string, v ...any) { l.emit(slog.LevelDebug, format, v) }

// Tracef logs at LevelTrace.
func (l *serverLogger) Tracef(format string, v ...any) { l.emit(LevelTrace, format, v) }

// lastError returns the last Errorf or Fatalf message, empty if none.
func (l *serverLogger) lastError() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}
