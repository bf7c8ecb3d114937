// Package archivewatcher is the "archive" watcher: it keeps one directory,
// target/creates, holding exactly the tar.gz archive it pins by checksum,
// with Choria's properties. It uses the manager's installer, so a download
// is hashed while streaming, checked against the SHA256SUMS it pins,
// extracted safely into a stage and swapped in atomically (the old version
// kept for rollback), and a later check re-verifies the tree and repairs
// it.
//
// Outcomes: Success when the archive was installed or replaced (the
// success_transition fires), Unchanged when the directory already holds it
// (no event at every interval, unlike Choria), and an error (the
// fail_transition fires) when it cannot be installed; the directory is then
// as it was.
//
// source, checksum, verify_checksum, username, password and governor may be
// templates, as in Choria (see github.com/mms-io/mms/watchers/render): they
// are rendered once, when the machine loads (Choria renders them at every
// check), and a value that renders invalid fails the load naming the
// property and its template.
//
// Differences from Choria, on purpose: verify and verify_checksum are required (without them Choria never
// noticed a new checksum); insecure (skipping TLS verification) is refused;
// http:// needs allow_http; and an existing target/creates that this
// watcher did not install is never replaced.
//
// The archive must be a machine: one top-level directory named creates
// holding a machine.yaml of that name, and a SHA256SUMS listing exactly
// its files (what `mms archive create` makes). Choria's watcher accepted
// any archive; this one reuses the manager's installer, whose checks rely
// on that layout. To ship plain files, add a minimal machine.yaml (one
// transition and, say, a timer watcher with a long timer).
package archivewatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/mms-io/mms/governor"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/render"
)

// Limits and defaults of the archive watcher.
const (
	// DefaultInterval is how often the directory is re-checked.
	DefaultInterval = 5 * time.Minute
	// MaxTimeout is the longest download timeout accepted.
	MaxTimeout = time.Hour
	// DefaultGovernorTimeout is how long a check waits for a governor slot
	// when governor_timeout is unset; MaxGovernorTimeout is the longest
	// accepted.
	DefaultGovernorTimeout = 5 * time.Minute
	MaxGovernorTimeout     = time.Hour
	// CheckTimeout bounds one check: a governor wait, then a download the
	// installer may retry, each attempt bounded by timeout.
	CheckTimeout = 6 * time.Hour
	// FullVerifyInterval is how often the installed tree is re-hashed in
	// full; other checks hash only files whose metadata changed.
	FullVerifyInterval = time.Hour
	// StateDirName is the default state directory inside target.
	StateDirName = ".mms-state"
)

func init() {
	watchers.Register(watchers.Info{
		Type:            "archive",
		Version:         "v1",
		New:             func() watchers.Watcher { return &Watcher{newInstaller: manager.NewMachineInstaller} },
		DefaultInterval: watchers.Duration(DefaultInterval),
		MinInterval:     watchers.Duration(10 * time.Second),
		Timeout:         watchers.Duration(CheckTimeout),
		Describe:        describe,
	})
}

// Watcher is the archive watcher's configuration (its machine.yaml
// properties) and runtime state.
type Watcher struct {
	// Source is where the archive comes from: https://, http:// (only with
	// AllowHTTP) or nats://BUCKET/OBJECT; it may be a template. Required.
	Source string `json:"source"`
	// Checksum is the sha256 (hex) of the archive; it may be a template.
	// Required.
	Checksum string `json:"checksum"`
	// Verify names the checksums file in the archive; only "SHA256SUMS"
	// (or nothing, meaning the same) is supported.
	Verify string `json:"verify,omitempty"`
	// VerifyChecksum is the sha256 (hex) of the SHA256SUMS file; it may
	// be a template. Required.
	VerifyChecksum string `json:"verify_checksum"`
	// Creates is the archive's single top-level directory, installed as
	// target/creates; it follows the machine name rules. Required.
	Creates string `json:"creates"`
	// Target is the absolute directory creates is installed in. Required.
	Target string `json:"target"`
	// Username and Password are basic-auth credentials (Choria style);
	// each may be a template. Prefer Auth, which keeps secrets out of
	// machine.yaml.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// Auth names a node-local credential in the state directory's
	// credentials/ folder.
	Auth string `json:"auth,omitempty"`
	// Timeout bounds one download attempt; default the installer's, at
	// most an hour.
	Timeout watchers.Duration `json:"timeout,omitzero"`
	// Governor names a fleet-wide limit on concurrent downloads (see mms
	// governor); a slot is taken only when a download is needed. It may
	// be a template.
	Governor string `json:"governor,omitempty"`
	// GovernorTimeout is how long to wait for a governor slot; default 5m,
	// at most an hour.
	GovernorTimeout watchers.Duration `json:"governor_timeout,omitzero"`
	// Insecure (skip TLS verification) is refused; see Validate.
	Insecure bool `json:"insecure,omitempty"`
	// AllowHTTP accepts an http:// source.
	AllowHTTP bool `json:"allow_http,omitempty"`
	// StateDir holds the install record and credentials; absolute.
	// Default: target/.mms-state.
	StateDir string `json:"state_dir,omitempty"`

	entry        spec.Machine // built by Validate
	newInstaller func(manager.InstallSettings) (manager.MachineInstaller, error)
	inst         manager.MachineInstaller
	log          *slog.Logger
	recovered    bool
	lastFull     time.Time
}

// Provision renders the templated properties and builds the installer
// rooted at target.
func (w *Watcher) Provision(d watchers.Deps) error {
	w.log = d.Log
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if err := w.renderEntry(render.NewRenderer(d)); err != nil {
		return err
	}
	state := w.StateDir
	if state == "" {
		// Not the machine's own directory: a managed machine's directory
		// is verified against its SHA256SUMS, which lists no state files.
		state = filepath.Join(w.Target, StateDirName)
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	g, err := governor.NewGate(d.Conn, d.Machine+"@"+d.Identity, w.log)
	if err != nil {
		return err
	}
	wait := w.GovernorTimeout.Std()
	if wait == 0 {
		wait = DefaultGovernorTimeout
	}
	inst, err := w.newInstaller(manager.InstallSettings{
		MachinesDir: w.Target,
		StateDir:    state,
		AllowHTTP:   w.AllowHTTP,
		Conn:        d.Conn,
		Gate: func(ctx context.Context, governor string) (func(), error) {
			ctx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			return g(ctx, governor)
		},
		FetchTimeout: w.Timeout.Std(),
		Log:          w.log,
	})
	if err != nil {
		return fmt.Errorf("build installer: %w", err)
	}
	w.inst = inst
	return nil
}

// State is the type-specific part of the archive watcher's state event.
type State struct {
	// Source, Creates and Target are the properties.
	Source  string `json:"source"`
	Creates string `json:"creates"`
	Target  string `json:"target"`
	// Checksum is the archive checksum the directory must hold.
	Checksum string `json:"checksum"`
	// PreviousOutcome is Choria's word for what the check did:
	// "downloaded" (installed or replaced), "verified" (already held, so
	// nothing downloaded) or "error". Choria's other words never reach an
	// event there either (a failed verification downloads again).
	PreviousOutcome string `json:"previous_outcome"`
	// InstallOutcome is mms's detail: "installed", "updated", "unchanged"
	// or "error" (a field Choria does not have).
	InstallOutcome string `json:"install_outcome"`
	// PreviousRunTime is how long the check took, in nanoseconds.
	PreviousRunTime time.Duration `json:"previous_run_time"`
	// Tampered names the file verification found modified, if any.
	Tampered string `json:"tampered,omitempty"`
}

// Choria's previous_outcome words for the archive watcher.
const (
	outcomeDownloaded = "downloaded"
	outcomeVerified   = "verified"
	outcomeError      = "error"
)

// choriaOutcome maps an install outcome to Choria's previous_outcome.
func choriaOutcome(out manager.EntryOutcome) string {
	switch out {
	case manager.EntryInstalled, manager.EntryUpdated:
		return outcomeDownloaded
	case manager.EntryUnchanged:
		return outcomeVerified
	}
	return outcomeError
}

// recoverer is implemented by installers that clean up after a crash.
type recoverer interface {
	Recover(ctx context.Context) error
}

// Check makes target/creates hold the pinned archive.
func (w *Watcher) Check(ctx context.Context) (watchers.Result, error) {
	start := time.Now()
	st := State{Source: w.entry.Source, Creates: w.Creates, Target: w.Target, Checksum: w.entry.Checksum, PreviousOutcome: outcomeError, InstallOutcome: outcomeError}
	fail := func(err error) (watchers.Result, error) {
		st.PreviousRunTime = time.Since(start)
		return watchers.Result{Outcome: watchers.Failure, State: st}, err
	}
	if r, ok := w.inst.(recoverer); ok && !w.recovered {
		if err := r.Recover(ctx); err != nil {
			return fail(fmt.Errorf("recover interrupted installs in %s: %w", w.Target, err))
		}
		w.recovered = true
	}
	records, err := w.inst.Installed()
	if err != nil {
		return fail(fmt.Errorf("read install records: %w", err))
	}
	dir := filepath.Join(w.Target, w.Creates)
	if _, ours := records[w.Creates]; !ours {
		if _, err := os.Lstat(dir); err == nil {
			return fail(fmt.Errorf("refusing to replace %s: it exists and was not installed by this watcher; move it away to let the watcher manage it", dir))
		}
	} else {
		full := w.lastFull.IsZero() || start.Sub(w.lastFull) >= FullVerifyInterval
		switch err := w.inst.Verify(ctx, w.Creates, full); {
		case err == nil && full:
			w.lastFull = start
		case errors.Is(err, manager.ErrTampered):
			st.Tampered = tamperedEntry(err)
			w.log.Warn("installed archive was modified; reinstalling it", "dir", dir, "tampered", st.Tampered, "error", err)
		case err != nil:
			w.log.Warn("verifying installed archive failed; installing checks it again", "dir", dir, "error", err)
		}
	}
	out, _, err := w.inst.Install(ctx, w.entry, 0)
	if err != nil {
		return fail(fmt.Errorf("install %s: %w", dir, err))
	}
	st.PreviousOutcome, st.InstallOutcome, st.PreviousRunTime = choriaOutcome(out), string(out), time.Since(start)
	if out == manager.EntryUnchanged {
		return watchers.Result{Outcome: watchers.Unchanged, State: st}, nil
	}
	w.log.Info("archive "+string(out), "dir", dir, "checksum", w.entry.Checksum)
	return watchers.Result{Outcome: watchers.Success, State: st}, nil
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

var (
	_ watchers.Watcher     = (*Watcher)(nil)
	_ watchers.Normalizer  = (*Watcher)(nil)
	_ watchers.Validator   = (*Watcher)(nil)
	_ watchers.Provisioner = (*Watcher)(nil)
	_ watchers.Closer      = (*Watcher)(nil)
)
