// Package machineswatcher is the "machines" watcher: it keeps the node's
// managed machines in the signed desired state stored in a machine data
// item (put there by a kv watcher). Each check opens the spec envelope,
// checks its signatures and replay rules, and reconciles: installs and
// updates the machines the spec selects for this node, loads them into the
// agent's host, rolls back versions that do not load, and (with
// purge_unknown) removes the machines this agent installed that are no
// longer wanted. See manager.Reconciler for the rules.
//
// Outcomes: Success when the check changed anything (installed, updated,
// purged or rolled back a machine) and nothing failed; Failure when the
// spec was rejected or any entry failed (even if others changed); a
// replayed older spec, a spec that has just gone stale and a missing data
// item are only reported; otherwise Unchanged. A failure or warning that is
// exactly the one reported by the previous check is not reported again, so
// a persistent problem publishes one event, not one per interval.
//
// Periodically (verify_interval, default an hour, and at the first check)
// the installed trees are re-hashed in full; other checks re-hash only
// files whose metadata changed. A modified machine is reinstalled and
// reported with the file that was tampered with.
//
// Besides the interval, a check runs:
//   - again after a capped, jittered exponential backoff (RetryFirst up to
//     RetryMax) when an entry failed in a way a retry may fix (a download,
//     a governor, a matcher probe), each retry logged with the failures;
//   - when a reconcile nudge for this node arrives on NudgeSubject (`mms
//     reconcile`): unsigned, it can only make the node check its spec now.
//
// A check in progress is stopped as soon as the data item holds a newer
// spec (a higher serial): a download, a governor wait or a matcher of the
// replaced spec never holds up the new one. Downloads that take more than a
// couple of seconds publish their progress as state events (outcome
// "report", previous_outcome "downloading", see ProgressState) and to the
// status document when the watcher's status reporter takes progress
// (manager.ProgressReporter).
package machineswatcher

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/governor"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/watchers"
)

// Intervals of the machines watcher.
const (
	// DefaultInterval is how often the watcher reconciles when
	// machine.yaml gives no interval: drift repair and re-verification.
	DefaultInterval = 5 * time.Minute
	// DefaultVerifyInterval is how often installed trees are re-hashed in
	// full when verify_interval is unset.
	DefaultVerifyInterval = time.Hour
	// MinVerifyInterval is the smallest verify_interval accepted.
	MinVerifyInterval = time.Minute
	// CheckTimeout bounds one reconcile pass, downloads included.
	CheckTimeout = time.Hour
)

func init() {
	watchers.Register(watchers.Info{
		Type:            "machines",
		Version:         "v1",
		New:             func() watchers.Watcher { return new(Watcher) },
		DefaultInterval: watchers.Duration(DefaultInterval),
		MinInterval:     watchers.Duration(2 * time.Second),
		Timeout:         watchers.Duration(CheckTimeout),
		Describe:        describe,
	})
}

// Watcher is the machines watcher's configuration (its machine.yaml
// properties) and runtime state.
type Watcher struct {
	// DataItem is the machine data key holding the spec envelope, as the
	// kv watcher stores it (its store_key). Required.
	DataItem string `json:"data_item"`
	// PurgeUnknown removes machines this agent installed that the spec no
	// longer selects for this node. Machines it did not install are never
	// touched.
	PurgeUnknown bool `json:"purge_unknown,omitempty"`
	// PublicKeys are the hex ed25519 keys trusted to sign specs. Without
	// any (here or in PublicKey), the keys compiled into the binary are
	// trusted (manager.PublicKey); with neither, one is required unless
	// InsecureUnsigned.
	PublicKeys []string `json:"public_keys,omitempty"`
	// PublicKey is Choria's single-key property, accepted for
	// compatibility; it is trusted alongside PublicKeys.
	PublicKey string `json:"public_key,omitempty"`
	// Threshold is how many distinct trusted keys must sign (0 means 1).
	Threshold int `json:"threshold,omitempty"`
	// AllowLegacySpec accepts v1 (Choria) envelopes, which have no replay
	// protection.
	AllowLegacySpec bool `json:"allow_legacy_spec,omitempty"`
	// AllowHTTP accepts http:// archive sources.
	AllowHTTP bool `json:"allow_http,omitempty"`
	// InsecureUnsigned accepts specs whatever their signatures.
	InsecureUnsigned bool `json:"insecure_unsigned,omitempty"`
	// StateDir holds the replay ledger, install records and node-local
	// credentials; it must be absolute. Default: the machine's directory
	// (for a compiled-in machine, its private directory under the agent's
	// data dir).
	StateDir string `json:"state_dir,omitempty"`
	// VerifyInterval is how often installed trees are re-hashed in full;
	// default an hour, at least a minute.
	VerifyInterval watchers.Duration `json:"verify_interval,omitzero"`
	// MachineManageInterval is Choria's property, in the spelling that
	// works in Choria: how often each managed machine's archive is verified
	// in full. mms honours it as VerifyInterval (give one of them).
	MachineManageInterval watchers.Duration `json:"MachineManageInterval,omitzero"`
	// MachineManageIntervalDoc is the spelling Choria documents,
	// machine_manage_interval, which Choria itself ignores; mms honours it
	// like MachineManageInterval, so a copied Choria manager machine means
	// what its author wrote.
	MachineManageIntervalDoc watchers.Duration `json:"machine_manage_interval,omitzero"`
	// MachinesDir, when set, must be the host's machines directory (the
	// default): the host loads machines only from there.
	MachinesDir string `json:"machines_dir,omitempty"`

	// Trust is set, instead of the key properties, when the watcher is
	// built in Go (the compiled-in manager machine): the node's trust
	// resolved once by manager.NewTrust, used as it is.
	Trust *manager.Trust `json:"-"`

	// Status, when set (in Go, by the compiled-in manager machine),
	// receives the report of every check: the agent's status document is
	// written from it.
	Status manager.StatusReporter `json:"-"`
	// Fleet, when set (in Go, by the compiled-in manager machine), tells
	// what the other nodes report, so rollouts can gate each wave.
	Fleet manager.FleetView `json:"-"`

	// Fixes, when set (in Go, by the compiled-in manager machine), name
	// the agent's flags that accept a v1 spec or an http:// source, for
	// the refusals to name; unset, they name this watcher's properties
	// (allow_legacy_spec, allow_http).
	Fixes manager.Fixes `json:"-"`

	// ResetSpecHistory, when set (in Go, from manager.Settings), is the
	// serial of the last accepted spec to forget at Provision: see
	// manager.ResetSpecHistory. Set it only from the node's own
	// configuration, never from a spec.
	ResetSpecHistory *uint64 `json:"-"`

	trust        manager.Trust // Trust, or resolved from the properties by Validate
	verifyEvery  time.Duration // VerifyInterval or the default
	newInstaller func(manager.InstallSettings) (manager.MachineInstaller, error)

	log      *slog.Logger
	data     watchers.DataStore
	conn     *nats.Conn // nil without NATS: no nudges
	identity string
	inst     manager.MachineInstaller
	rec      *manager.Reconciler
	runtime  runState
	lastFull time.Time
	checks   checks                // the running check, for Stream
	ignored  manager.IgnoredNudges // the nudges it ignored, for their log lines

	reportState func(state any) // publishes a state event mid-check; nil: none
	progress    *progress       // nil: no progress reporting
}

// Validate checks the properties and parses the keys.
func (w *Watcher) Validate() error {
	var errs []error
	if w.DataItem == "" {
		errs = append(errs, errors.New("data_item: required"))
	}
	trust, err := w.resolveTrust()
	if err != nil {
		errs = append(errs, err)
	}
	w.trust = trust
	for _, p := range []struct{ name, dir string }{{"state_dir", w.StateDir}, {"machines_dir", w.MachinesDir}} {
		if p.dir != "" && !filepath.IsAbs(p.dir) {
			errs = append(errs, fmt.Errorf("%s: %q must be an absolute path", p.name, p.dir))
		}
	}
	name, every, err := w.verifyInterval()
	if err != nil {
		errs = append(errs, err)
	}
	w.verifyEvery = every
	switch {
	case w.verifyEvery == 0:
		w.verifyEvery = DefaultVerifyInterval
	case w.verifyEvery < MinVerifyInterval:
		errs = append(errs, fmt.Errorf("%s: %v is below the minimum of %v (every check already re-hashes the files whose size, time or inode changed)", name, watchers.Duration(every), watchers.Duration(MinVerifyInterval)))
	}
	return errors.Join(errs...)
}

// verifyInterval returns the full re-verification interval and the
// property that set it: verify_interval or one of Choria's spellings,
// which must agree when several are given.
func (w *Watcher) verifyInterval() (string, time.Duration, error) {
	name, every := "verify_interval", w.VerifyInterval.Std()
	for _, p := range []struct {
		name string
		d    watchers.Duration
	}{{"MachineManageInterval", w.MachineManageInterval}, {"machine_manage_interval", w.MachineManageIntervalDoc}} {
		switch {
		case p.d == 0:
		case every == 0:
			name, every = p.name, p.d.Std()
		case p.d.Std() != every:
			return name, every, fmt.Errorf("%s: %v disagrees with %s: %v (they are one setting; give one)", p.name, p.d, name, watchers.Duration(every))
		}
	}
	return name, every, nil
}

// resolveTrust returns Trust, or the trust the key properties describe,
// resolved by manager.NewTrust (which adds the compiled-in keys when none
// are given); its errors name the properties.
func (w *Watcher) resolveTrust() (manager.Trust, error) {
	keyProps := len(w.PublicKeys) > 0 || w.PublicKey != "" || w.Threshold != 0 || w.AllowLegacySpec || w.InsecureUnsigned
	if w.Trust != nil {
		if keyProps {
			return manager.Trust{}, errors.New("public_keys, public_key, threshold, allow_legacy_spec, insecure_unsigned: not allowed when the trust is set in Go")
		}
		if w.Trust.IsZero() {
			return manager.Trust{}, errors.New("trust: not resolved (build it with manager.NewTrust)")
		}
		return *w.Trust, nil
	}
	var keys []ed25519.PublicKey
	var errs []error
	addKey := func(field, text string) {
		pk, err := packer.ParsePublicKey(text)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			return
		}
		keys = append(keys, pk)
	}
	for i, k := range w.PublicKeys {
		addKey(fmt.Sprintf("public_keys[%d]", i), k)
	}
	if w.PublicKey != "" {
		addKey("public_key", w.PublicKey)
	}
	if err := errors.Join(errs...); err != nil {
		return manager.Trust{}, err
	}
	t, err := manager.NewTrust(manager.TrustConfig{Keys: keys, Threshold: w.Threshold, AllowV1: w.AllowLegacySpec, Unsigned: w.InsecureUnsigned})
	switch {
	case errors.Is(err, manager.ErrNoTrustedKeys):
		return t, errors.New("public_keys: at least one trusted key is required (insecure_unsigned: true accepts unsigned specs)")
	case errors.Is(err, manager.ErrThreshold):
		return t, err // "threshold N …" names the property
	case errors.Is(err, manager.ErrUnsignedWithKeys):
		return t, fmt.Errorf("insecure_unsigned: %w", err)
	}
	return t, err
}

// Provision builds the installer and the reconciler from the machine's
// dependencies: the host, the data store, the NATS connection (nats://
// sources and governors) and the node's identity and facts.
func (w *Watcher) Provision(d watchers.Deps) error {
	w.log = d.Log
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if d.Host == nil {
		return errors.New("the machines watcher needs the agent's machine host")
	}
	if d.Data == nil {
		return errors.New("the machines watcher needs the machine's data store")
	}
	w.data, w.conn, w.identity, w.reportState = d.Data, d.Conn, d.Identity, d.Report
	machines := filepath.Clean(d.Host.MachinesDir())
	if w.MachinesDir != "" && filepath.Clean(w.MachinesDir) != machines {
		return fmt.Errorf("machines_dir: %q is not the host's machines directory %q, which is the only one it loads machines from", w.MachinesDir, machines)
	}
	state := w.StateDir
	if state == "" {
		state = d.Dir
	}
	if state == "" {
		return errors.New("state_dir: required when the machine has no directory")
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	if w.ResetSpecHistory != nil {
		w.resetHistory(state, *w.ResetSpecHistory)
	} else if rec, ok, err := manager.ForgetSpecHistoryReset(state); err != nil {
		w.log.Warn("could not drop the record of an earlier --reset-spec-history", "error", err)
	} else if ok {
		w.log.Info("--reset-spec-history is no longer set: its record is dropped, so the same serial may be reset again", "serial", rec.Serial, "reset_at", rec.At)
	}
	g, err := gate(d, w.log)
	if err != nil {
		return err
	}
	if w.newInstaller == nil {
		w.newInstaller = manager.NewMachineInstaller
	}
	inst, err := w.newInstaller(manager.InstallSettings{
		MachinesDir: machines,
		StateDir:    state,
		AllowHTTP:   w.AllowHTTP,
		Conn:        d.Conn,
		Gate:        g,
		Progress:    w.progressReporter(),
		Log:         w.log,
	})
	if err != nil {
		return fmt.Errorf("build installer: %w", err)
	}
	rec, err := manager.NewReconciler(manager.ReconcilerConfig{
		Installer:    inst,
		Host:         d.Host,
		StateDir:     state,
		Trust:        w.trust,
		AllowHTTP:    w.AllowHTTP,
		Fixes:        w.Fixes,
		PurgeUnknown: w.PurgeUnknown,
		Identity:     d.Identity,
		Facts:        d.Facts,
		Path:         os.Getenv("PATH"),
		Reserved:     compiledIn,
		Fleet:        w.Fleet,
		Log:          w.log,
	})
	if err != nil {
		return err
	}
	w.inst, w.rec = inst, rec
	return nil
}

// resetHistory forgets the last accepted spec when it has serial, and says
// so loudly; when the node already did that reset, or the ledger holds
// another serial, it only warns, so a flag left in a service file after it
// acted does nothing.
func (w *Watcher) resetHistory(state string, serial uint64) {
	rec, err := manager.ResetSpecHistory(state, serial, time.Now())
	switch {
	case err == nil:
		w.log.Warn("SPEC HISTORY RESET by the operator (--reset-spec-history): the last accepted spec is forgotten; the next validly signed spec is accepted whatever its serial or format (v1 included, when allowed). Publish the spec you want before anyone else can.",
			"forgotten_serial", rec.Serial, "forgotten_digest", rec.Digest, "forgotten_format", rec.Format.String(), "accepted_at", rec.AcceptedAt)
	case errors.Is(err, manager.ErrResetDone):
		w.log.Warn("--reset-spec-history did nothing: this node already reset that serial (a reset happens once)", "serial", serial, "error", err)
	case errors.Is(err, packer.ErrResetMismatch):
		w.log.Warn("--reset-spec-history did nothing: the spec history does not hold that serial (already reset? remove the flag)", "serial", serial, "error", err)
	default:
		w.log.Error("--reset-spec-history failed; the spec history is unchanged", "serial", serial, "error", err)
	}
}

// compiledIn reports whether name is a machine compiled into the agent: a
// spec entry may not replace it.
func compiledIn(name string) bool {
	return slices.Contains(agent.RegisteredMachines(), name)
}

// gate returns the governors of the node's NATS connection, or without one
// a gate that explains why a governed download cannot run.
func gate(d watchers.Deps, log *slog.Logger) (manager.Gate, error) {
	return governor.NewGate(d.Conn, d.Machine+"@"+d.Identity, log)
}

// idleCloser is implemented by installers that keep download connections
// open for reuse (the manager's Installer).
type idleCloser interface{ CloseIdleConnections() }

// Close drops the installer's idle download connections when the machine
// stops.
func (w *Watcher) Close() error {
	if c, ok := w.inst.(idleCloser); ok {
		c.CloseIdleConnections()
	}
	return nil
}

var _ watchers.Validator = (*Watcher)(nil)
var _ watchers.Provisioner = (*Watcher)(nil)
var _ watchers.Closer = (*Watcher)(nil)
