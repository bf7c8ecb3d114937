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
	// Progress, when set, receives the progress of downloads that take
	// more than a couple of seconds.
	Progress ProgressReporter
	// Log receives the installer's logs; nil discards them.
	Log *slog.Logger
}

// Fixes name, in the words of whoever configures a node, the settings that
// accept what the node refuses by default, so a refusal says how to
// accept it: a flag of the agent, or a property of the machine.yaml that
// runs the machines watcher.
type Fixes struct {
	// AllowLegacySpec accepts v1 (Choria) specs, e.g.
	// "mms agent --allow-legacy-spec"; empty means the machines watcher's
	// property, "allow_legacy_spec: true".
	AllowLegacySpec string
	// AllowHTTP accepts http:// archive sources, e.g.
	// "mms agent --allow-http"; empty means "allow_http: true".
	AllowHTTP string
}

// legacy returns how to accept v1 specs.
func (f Fixes) legacy() string {
	if f.AllowLegacySpec == "" {
		return "allow_legacy_spec: true"
	}
	return f.AllowLegacySpec
}

// http returns how to accept http:// sources.
func (f Fixes) http() string {
	if f.AllowHTTP == "" {
		return "allow_http: true"
	}
	return f.AllowHTTP
}

// MachineName is the name of the compiled-in manager machine (package
// manager/mmsmanager), which a spec entry may not take.
const MachineName = "mms_manager"

// Settings are a node's manager settings: what `mms agent` resolves from its
// flags and attaches to the node (agent.WithSetting) for the compiled-in
// manager machine, which reads them with agent.Setting. They travel as
// typed values from the command line to the reconciler, never as text.
type Settings struct {
	// Trust says who signs specs; the zero Trust means the keys compiled
	// into the binary (see NewTrust).
	Trust Trust
	// Bucket and Key name the KV entry holding the signed spec; empty
	// means the defaults of `mms put` (MACHINES, machines).
	Bucket, Key string
	// AllowHTTP allows http:// archive sources.
	AllowHTTP bool
	// VerifyInterval is how often installed machines are re-hashed in full
	// against their SHA256SUMS; zero means the machines watcher's default.
	VerifyInterval time.Duration
	// Status, when set, receives the report of every reconcile pass (the
	// agent's status document).
	Status StatusReporter
	// Fleet, when set, reads what the fleet's nodes report, so entries
	// with a rollout policy move in waves; without it they move at once.
	Fleet FleetView
	// ResetSpecHistory, when set, is the serial of the last accepted spec
	// the operator wants forgotten (`mms agent --reset-spec-history
	// SERIAL`): at start, if the replay ledger holds exactly that serial,
	// it is reset (see [ResetSpecHistory]), so the next validly signed
	// spec is accepted whatever its serial or format. Naming the serial
	// makes a flag left in a service file harmless once it has acted.
	ResetSpecHistory *uint64
}
