package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mms-io/mms/internal/atomicfile"
	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/watchers"
)

// LedgerFile is the replay ledger's file name in the manager's state dir.
const LedgerFile = "ledger.json"

// DefaultConcurrency is how many entries a reconcile pass works on at once
// when ReconcilerConfig.Concurrency is zero. Entries are independent, so a
// slow download does not hold up the others; the limit keeps a large spec
// from opening dozens of downloads and extractions at once (governors limit
// downloads fleet-wide on top of this).
const DefaultConcurrency = 4

// MachineInstaller is what the [Reconciler] needs of an installer: the
// manager's *Installer implements it. It is an interface so the reconcile
// logic can be tested without downloads. Implementations must be safe for
// concurrent calls on distinct machine names.
type MachineInstaller interface {
	// Install makes MachinesDir/<m.Name> hold exactly the archive m pins
	// and returns the definition it checked, if it installed a tree.
	Install(ctx context.Context, m spec.Machine, serial uint64) (EntryOutcome, *machine.Definition, error)
	// Rollback puts the previous version of name back.
	Rollback(ctx context.Context, name string) error
	// Purge removes a machine this agent installed.
	Purge(ctx context.Context, name string) error
	// Installed returns the install records, by machine name.
	Installed() (map[string]Record, error)
	// Verify re-checks an installed machine; tampering wraps ErrTampered.
	Verify(ctx context.Context, name string, full bool) error
}

// ResetRecordFile is where, in the manager's state dir, a node remembers
// the spec history reset it did ([ResetSpecHistory]).
const ResetRecordFile = "spec-history-reset.json"

// ErrResetDone is wrapped by [ResetSpecHistory]'s error when the node
// already reset that serial and the record of it is still there.
var ErrResetDone = errors.New("this node already reset that serial")

// ResetRecord is what a node remembers of its spec history reset.
type ResetRecord struct {
	// Serial is the serial the operator named; At when the reset was
	// done; Forgotten the record it forgot.
	Serial    uint64        `json:"serial"`
	At        time.Time     `json:"at"`
	Forgotten packer.Record `json:"forgotten"`
}

// ResetSpecHistory forgets the spec a node accepted last, when its serial
// is serial, by resetting the replay ledger in stateDir (the Reconciler's
// StateDir): the next validly signed spec is then accepted whatever its
// serial or format, so a v1 spec after a v2 one, or a lower serial after a
// bad high one. It is the operator's local, explicit way back; the file is
// kept aside (see packer.FileLedger.Reset). Call it before the node's
// Reconciler opens a spec.
//
// A reset happens once: it is recorded in stateDir/[ResetRecordFile], and
// while that record names serial another call does nothing and returns an
// error wrapping [ErrResetDone]. Otherwise a flag left in a unit file
// would reset the history at every start at which the node holds serial
// again (it re-accepts the same spec, or a v1 spec, serial 0), and whoever
// can write the spec key, without signing anything, could then replay any
// older signed spec to it. [ForgetSpecHistoryReset] drops the record (the
// agent does when it starts without the flag), so the same serial can be
// reset again on purpose.
//
// It returns the forgotten record, or an error wrapping
// packer.ErrResetMismatch when the ledger holds another serial (or none).
func ResetSpecHistory(stateDir string, serial uint64, now time.Time) (packer.Record, error) {
	recordPath := filepath.Join(stateDir, ResetRecordFile)
	if data, err := os.ReadFile(recordPath); err == nil {
		var done ResetRecord
		if json.Unmarshal(data, &done) == nil && done.Serial == serial {
			return done.Forgotten, fmt.Errorf("reset spec history: %w: serial %d at %s (forgotten digest %.12s); the flag does nothing more while it is set: remove it, and start once without it, before resetting serial %d again",
				ErrResetDone, serial, done.At.UTC().Format(time.RFC3339), done.Forgotten.Digest, serial)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return packer.Record{}, fmt.Errorf("reset spec history: read the record of earlier resets: %w", err)
	}
	forgotten, err := packer.NewFileLedger(filepath.Join(stateDir, LedgerFile)).Reset(serial, now)
	if err != nil {
		return forgotten, err
	}
	data, err := json.Marshal(ResetRecord{Serial: serial, At: now.UTC(), Forgotten: forgotten})
	if err != nil {
		return forgotten, fmt.Errorf("reset spec history: record it: %w", err)
	}
	if err := atomicfile.WriteFile(recordPath, data, 0o600); err != nil {
		return forgotten, fmt.Errorf("reset spec history: the history was reset, but recording it failed (the flag would act again at the next start: remove it): %w", err)
	}
	return forgotten, nil
}

// ForgetSpecHistoryReset drops the record of an earlier spec history reset
// (see [ResetSpecHistory]) and returns it; ok is false when there was none.
func ForgetSpecHistoryReset(stateDir string) (rec ResetRecord, ok bool, err error) {
	recordPath := filepath.Join(stateDir, ResetRecordFile)
	data, err := os.ReadFile(recordPath)
	if errors.Is(err, fs.ErrNotExist) {
		return ResetRecord{}, false, nil
	}
	if err != nil {
		return ResetRecord{}, false, fmt.Errorf("forget the spec history reset: %w", err)
	}
	_ = json.Unmarshal(data, &rec) // only for the log: a damaged record is dropped too
	if err := os.Remove(recordPath); err != nil {
		return rec, false, fmt.Errorf("forget the spec history reset: %w", err)
	}
	return rec, true, nil
}

// ReconcilerConfig configures a [Reconciler].
type ReconcilerConfig struct {
	// Installer installs, rolls back and purges machines. Required.
	Installer MachineInstaller
	// Host loads and unloads the machines. Required.
	Host watchers.Host
	// StateDir holds the replay ledger (StateDir/ledger.json). It must
	// exist. Required.
	StateDir string
	// Trust says who signs specs (see NewTrust). Required.
	Trust Trust
	// AllowHTTP accepts http:// archive sources.
	AllowHTTP bool
	// Fixes name the settings that accept what this node refuses, in the
	// words of whoever configures it; refusals in logs and events name
	// them.
	Fixes Fixes
	// PurgeUnknown removes machines this agent installed that the spec no
	// longer selects for this node.
	PurgeUnknown bool
	// Identity, Facts, Path and Stat are what matchers see of the node:
	// Facts nil means no facts, Path is the PATH has_command searches and
	// Stat nil means os.Stat.
	Identity string
	Facts    func() map[string]any
	Path     string
	Stat     func(name string) (fs.FileInfo, error)
	// Concurrency caps the entries reconciled at once; 0 means
	// [DefaultConcurrency].
	Concurrency int
	// Fleet reads what the fleet's nodes report, for entries with a
	// rollout policy; nil applies no rollout (every node moves at once).
	Fleet FleetView
	// Reserved reports names that no spec entry may use, such as the
	// compiled-in machines' (nil: none). An entry with such a name fails.
	Reserved func(name string) bool
	// Log receives the reconciler's logs; nil discards them.
	Log *slog.Logger
	// Now is the clock specs are checked against; nil means time.Now.
	Now func() time.Time
}

// Reconciler makes the machines on a node match a signed spec. It is
// level-based: every pass compares the whole spec with what is installed
// and repairs any difference, so a missed update or a machine deleted by
// hand is fixed by the next pass, and a pass with nothing to do downloads
// nothing.
//
// The rules, in order:
//
//   - The envelope is opened with packer.Open (signatures, threshold,
//     replay ledger, expiry). A rejected spec changes nothing: the report
//     says why (Report.Rejected) and the machines keep running as they are.
//     A replayed (older) spec is only a warning.
//   - An expired spec that is the one already accepted is stale: its
//     machines keep running and are still repaired, but nothing is purged.
//   - Each entry is validated on its own: an invalid entry fails with the
//     reason and the others go on. An entry that fails for any reason
//     (invalid, reserved name, matcher error, install or load failure) still
//     counts as wanted, so it is never purged because of its own failure: a
//     typo in a checksum must not delete a running machine. An entry whose
//     name itself is invalid (a confusable character, a path) could mean
//     any installed machine, so while the spec has one nothing is purged.
//   - Matchers are compiled once per accepted spec digest and evaluated
//     against the node (identity, facts, PATH, files). A matcher that
//     cannot be evaluated is a failure, never a silent "no match"; so is
//     one that runs longer than spec.DefaultMatchTimeout (expr has no
//     timeout: the evaluation checks its budget at every loop iteration
//     and probe, see spec.Matcher.MatchContext).
//   - A wanted entry is installed (nothing is downloaded when it already
//     is) and loaded into the host. A new version that fails to load is
//     rolled back to the previous one; a first install that fails to load
//     is removed again. A version that failed to load is not downloaded
//     again until the spec pins another version or the agent restarts.
//   - With PurgeUnknown, machines this agent installed (those with an
//     install record, never any other) that the spec no longer selects are
//     unloaded and removed. Purges run before installs, so an old machine
//     frees its resources before its replacement starts.
//
// Reconcile calls are serialised; entries of one pass run concurrently
// (see ReconcilerConfig.Concurrency).
type Reconciler struct {
	cfg    ReconcilerConfig
	log    *slog.Logger
	ledger *packer.FileLedger

	mu      sync.Mutex              // serialises Reconcile; guards the fields below
	plan    *plan                   // the last accepted spec's entries, validated and compiled
	matches spec.MatcherCache       // the matchers of the last specs planned, compiled once
	bad     map[string]badVersion   // versions that failed to load, by machine name
	applied *AppliedSpec            // the spec the node runs; nil until read from the ledger
	health  map[string]*entryHealth // health of each machine's installed version, by name
}

// badVersion is a version of a machine that failed to load.
type badVersion struct {
	checksum, verifyChecksum string
	reason                   string
	// outcome is what the entry reports while the spec pins this version:
	// failed (it did not load), rolled_back or unhealthy (its health gate);
	// empty means failed.
	outcome EntryOutcome
}

// ReconcileOptions tune one pass.
type ReconcileOptions struct {
	// Verify re-checks the installed trees of wanted machines before
	// installing: a tampered tree is reported and reinstalled.
	Verify VerifyMode
	// Interrupt, when set, stops the long, restartable parts of the pass
	// when it ends: downloads, governor waits, matcher evaluation and the
	// entries not started yet (the machines watcher ends it when a newer
	// spec arrives). The short steps that must not stop half way —
	// loading a machine into the host, rolling back, purging — only stop
	// with the pass's own ctx (the agent shutting down). It should be
	// derived from that ctx; nil means ctx.
	Interrupt context.Context
}

// VerifyMode is how a pass re-verifies installed machines.
type VerifyMode int

const (
	// VerifyNone leaves verification to Install alone.
	VerifyNone VerifyMode = iota
	// VerifyQuick hashes only files whose metadata changed since the last
	// full check.
	VerifyQuick
	// VerifyFull hashes every file.
	VerifyFull
)

// NewReconciler checks cfg and returns a Reconciler.
func NewReconciler(cfg ReconcilerConfig) (*Reconciler, error) {
	var errs []error
	if cfg.Installer == nil {
		errs = append(errs, errors.New("installer is required"))
	}
	if cfg.Host == nil {
		errs = append(errs, errors.New("host is required"))
	}
	if cfg.StateDir == "" {
		errs = append(errs, errors.New("state dir is required"))
	}
	if cfg.Trust.IsZero() {
		errs = append(errs, errors.New("trust is required: resolve it with NewTrust"))
	}
	if cfg.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("concurrency %d is negative", cfg.Concurrency))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new reconciler: %w", err)
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Stat == nil {
		cfg.Stat = os.Stat
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{
		cfg:    cfg,
		log:    log,
		ledger: packer.NewFileLedger(filepath.Join(cfg.StateDir, LedgerFile)),
		bad:    map[string]badVersion{},
		health: map[string]*entryHealth{},
	}, nil
}

// Reconcile opens envelope and makes the node's machines match it (see
// [Reconciler] for the rules). It never returns without a report; the
// report's Err is nil only when everything went well.
func (r *Reconciler) Reconcile(ctx context.Context, envelope []byte, opts ReconcileOptions) PassReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := r.reconcile(ctx, envelope, opts)
	if rep.Rejected == "" {
		r.applied = &AppliedSpec{Serial: rep.Serial, Digest: rep.Digest, Format: rep.Format, AcceptedAt: r.acceptedAt(rep.Digest)}
	}
	rep.Applied = r.appliedSpec()
	return rep
}

// Rejected returns the report of a pass that had no spec to open (the
// data item holding it is missing or unreadable): kind and err say why;
// the node runs what it ran.
func (r *Reconciler) Rejected(kind Rejection, err error) PassReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	return PassReport{Rejected: kind, Err: err, Applied: r.appliedSpec()}
}

// appliedSpec returns the spec the node runs, reading the replay ledger
// the first time. r.mu is held.
func (r *Reconciler) appliedSpec() AppliedSpec {
	if r.applied == nil {
		rec, ok, err := r.ledger.Last()
		if err != nil {
			return AppliedSpec{} // Reconcile reports the unreadable ledger
		}
		r.applied = &AppliedSpec{}
		if ok {
			*r.applied = AppliedSpec{Serial: rec.Serial, Digest: rec.Digest, Format: rec.Format.String(), AcceptedAt: rec.AcceptedAt}
		}
	}
	return *r.applied
}

// acceptedAt returns when the ledger accepted the spec with digest, or the
// zero time.
func (r *Reconciler) acceptedAt(digest string) time.Time {
	if rec, ok, err := r.ledger.Last(); err == nil && ok && rec.Digest == digest {
		return rec.AcceptedAt
	}
	return time.Time{}
}

// reconcile is one pass; r.mu is held.
func (r *Reconciler) reconcile(ctx context.Context, envelope []byte, opts ReconcileOptions) PassReport {
	opened, err := packer.Open(envelope, r.openOptions())
	if err != nil {
		rep := PassReport{Rejected: RejectionOf(err), Err: fmt.Errorf("open spec: %w", err)}
		if errors.Is(err, packer.ErrLegacyRefused) {
			rep.Err = fmt.Errorf("open spec: %w; to accept v1 specs anyway, set %s", err, r.cfg.Fixes.legacy())
		}
		if insp, ierr := packer.Inspect(envelope); ierr == nil {
			// Unverified: only to say which spec was refused.
			rep.Serial, rep.Format, rep.Digest = insp.Spec.Serial, insp.Format.String(), insp.Digest
		}
		r.logRejection(rep)
		return rep
	}
	rep := PassReport{
		Serial:    opened.Spec.Serial,
		Digest:    opened.Digest,
		Format:    opened.Format.String(),
		Unchanged: opened.Unchanged,
		Stale:     opened.Stale,
	}
	p, err := r.planFor(opened)
	if err != nil {
		rep.Rejected, rep.Err = RejectionOf(err), fmt.Errorf("spec serial %d: %w", opened.Spec.Serial, err)
		r.logRejection(rep)
		return rep
	}
	if rs := opened.Reset; rs != nil {
		r.log.Warn("SPEC HISTORY RESET: a signed reset spec replaced a last accepted serial above the serial ceiling; this node follows the new serial from now on",
			"serial", rep.Serial, "forgotten_serial", rs.FromSerial, "forgotten_digest", rs.FromDigest, "reason", rs.Reason)
	}
	if opened.Stale {
		r.log.Warn("spec has expired; running its machines but purging nothing until a new spec arrives",
			"serial", rep.Serial, "expired", opened.Spec.Expires)
	}
	r.forgetBadVersions(p)

	soft := opts.Interrupt
	if soft == nil {
		soft = ctx
	}
	// The install records are read once per pass (a node with many
	// machines reads a file for each), and again only after a purge
	// removed some.
	installed, ierr := r.cfg.Installer.Installed()
	ev := r.evaluateAll(soft, p, copyNotes{records: installed, err: ierr})
	results, keep, inSpec, holdPurge := ev.results, ev.keep, ev.inSpec, ev.holdPurge

	var errs []error
	var purged []MachineResult
	if holdPurge && r.cfg.PurgeUnknown {
		r.log.Warn("not purging anything: an entry's name is invalid, so which installed machine it means is unknown", "serial", rep.Serial)
	}
	if r.cfg.PurgeUnknown && !opened.Stale && !holdPurge {
		var err error
		if purged, err = r.purge(ctx, installed, ierr, keep, inSpec); err != nil {
			errs = append(errs, err)
		}
		if len(purged) > 0 {
			installed, ierr = r.cfg.Installer.Installed()
		}
	}
	if ierr != nil {
		errs = append(errs, fmt.Errorf("read install records: %w", ierr))
	}
	r.noteHeld(results, installed)
	rep.NextCheck = r.holdForRollout(soft, p, results, installed, &rep.FleetWait)
	r.installAll(ctx, soft, p, results, opts, opened.Spec.Serial)
	rep.NextCheck = minPositive(rep.NextCheck, r.judge(ctx, p, results, installed))

	rep.Machines = append(results, purged...)
	for _, m := range rep.Machines {
		if m.Outcome == EntryFailed {
			errs = append(errs, fmt.Errorf("machine %q: %s", m.Name, m.Reason))
		}
	}
	rep.Err = errors.Join(errs...)
	return rep
}

// evaluation is what evaluateAll found: one result per entry (pending,
// with an empty outcome, for an entry to install) and what may be purged.
type evaluation struct {
	results   []MachineResult
	keep      map[string]bool // names the spec keeps on this node
	inSpec    map[string]bool // names the spec has an entry for
	holdPurge bool            // an entry's name is invalid: it may mean any installed machine
}

// evaluateAll decides what to do with each entry of p on this node (see
// evaluate), with what the node is now: copies are its install records.
func (r *Reconciler) evaluateAll(ctx context.Context, p *plan, copies copyNotes) evaluation {
	env := r.env()
	ev := evaluation{results: make([]MachineResult, len(p.entries)), keep: map[string]bool{}, inSpec: map[string]bool{}}
	for i, e := range p.entries {
		res, kept := r.evaluate(ctx, e, &env, copies)
		ev.results[i] = res
		ev.inSpec[e.machine.Name] = true
		if kept {
			ev.keep[e.machine.Name] = true
		}
		if e.badName {
			ev.holdPurge = true
		}
	}
	return ev
}

// openOptions are the packer.Open options for this node.
func (r *Reconciler) openOptions() packer.OpenOptions {
	opts := r.cfg.Trust.openOptions(r.ledger)
	opts.Now = r.cfg.Now
	return opts
}

// env is what matchers see of the node in this pass.
func (r *Reconciler) env() spec.Env {
	env := spec.Env{Identity: r.cfg.Identity, Path: r.cfg.Path, Stat: r.cfg.Stat}
	if r.cfg.Facts != nil {
		env.Facts = r.cfg.Facts()
	}
	return env
}

// logRejection logs a rejected spec at the level its kind deserves.
func (r *Reconciler) logRejection(rep PassReport) {
	args := []any{"rejected", rep.Rejected, "serial", rep.Serial, "error", rep.Err}
	if rep.Rejected.Warning() {
		r.log.Warn("ignoring spec; the running machines stay as they are", args...)
		return
	}
	r.log.Error("spec rejected; the running machines stay as they are", args...)
}
