package manager

import (
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// InstallSettings are what a watcher knows when it builds the installer it
// hands to a [Reconciler] (the machines watcher) or uses itself (the
// archive watcher).
type InstallSettings struct {
	// MachinesDir is where machines are installed.
	MachinesDir string
	// StateDir holds the install records (StateDir/installed) and the
	// node-local credentials (StateDir/credentials).
	StateDir string
	// AllowHTTP allows http:// sources.
	AllowHTTP bool
	// Conn fetches nats:// sources; nil makes them fail clearly.
	Conn *nats.Conn
	// Gate enforces governors; nil means entries naming a governor are
	// downloaded without one.
	Gate Gate
	// FetchTimeout bounds one download attempt; zero means the fetcher's
	// default.
	FetchTimeout time.Duration
	// Log receives the installer's logs; nil discards them.
	Log *slog.Logger
}
