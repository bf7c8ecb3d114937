package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// InstallerConfig configures an [Installer].
type InstallerConfig struct {
	// MachinesDir (M) holds the live machines, M/<name>, and the
	// installer's dot-named temporaries next to them.
	MachinesDir string
	// StateDir (S) holds the install records, S/installed/<name>.json,
	// and the node-local credentials, S/credentials/<auth>.
	StateDir string
	// Fetcher downloads archives; nil means NewFetcher with only
	// CredentialsDir set to S/credentials.
	Fetcher *Fetcher
	// Gate limits concurrent downloads by governor; nil means no limits.
	Gate Gate
	// Limits bound extraction; zero fields take packer.DefaultLimits.
	Limits packer.Limits
	// Log receives what the installer does; nil discards it.
	Log *slog.Logger
}

// Installer installs, replaces, rolls back and removes machine directories
// in M, atomically and recoverably (see Install and Recover). Its methods
// are safe for concurrent use; calls for the same machine run one at a
// time.
type Installer struct {
	machines string
	records  *recordStore
	fetcher  *Fetcher
	gate     Gate
	limits   packer.Limits
	log      *slog.Logger
	verifier packer.TreeVerifier
	locks    nameLocks
	discards *discarder

	// crashAt, when set (by tests), is called after each step of a swap
	// ("download", "extract", "record", "rename1", "rename2"…) and of a
	// purge ("purge-rename1"…, "purge-record"); returning true stops the
	// operation there as if the process had died: nothing is cleaned up or
	// undone. A binary built with the mmscrashtest tag sets it, and
	// noExchange, from its environment (envCrashTest).
	crashAt func(step string) bool
	// noExchange forces the two-rename fallback (tests).
	noExchange bool
}

// errCrashed is returned when crashAt stopped an operation.
var errCrashed = errors.New("simulated crash")

// NewInstaller returns an Installer for cfg, creating M and S/installed
// when missing.
func NewInstaller(cfg InstallerConfig) (*Installer, error) {
	if cfg.MachinesDir == "" || cfg.StateDir == "" {
		return nil, errors.New("new installer: MachinesDir and StateDir are required")
	}
	machines, err := filepath.Abs(cfg.MachinesDir)
	if err != nil {
		return nil, fmt.Errorf("new installer: %w", err)
	}
	state, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("new installer: %w", err)
	}
	if err := os.MkdirAll(machines, 0o755); err != nil {
		return nil, fmt.Errorf("new installer: machines directory: %w", err)
	}
	records := filepath.Join(state, "installed")
	if err := os.MkdirAll(records, 0o700); err != nil {
		return nil, fmt.Errorf("new installer: records directory: %w", err)
	}
	fetcher := cfg.Fetcher
	if fetcher == nil {
		if fetcher, err = NewFetcher(FetchConfig{CredentialsDir: filepath.Join(state, "credentials"), Log: cfg.Log}); err != nil {
			return nil, fmt.Errorf("new installer: %w", err)
		}
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	crashAt, noExchange := envCrashTest()
	return &Installer{
		crashAt:    crashAt,
		noExchange: noExchange,
		machines:   machines,
		records:    newRecordStore(records),
		fetcher:    fetcher,
		gate:       cfg.Gate,
		limits:     cfg.Limits,
		log:        log,
		locks:      nameLocks{held: make(map[string]chan struct{})},
		discards:   newDiscarder(log, crashAt),
	}, nil
}

// CloseIdleConnections closes the idle download connections of the
// installer's Fetcher (see [Fetcher.CloseIdleConnections]).
func (i *Installer) CloseIdleConnections() { i.fetcher.CloseIdleConnections() }

// Install makes M/<m.Name> hold exactly the archive m pins, and returns
// Installed (no tree before), Updated (a tree was replaced: another
// version, kept as .prev-<name>, or a damaged copy of this version,
// discarded) or Unchanged (the record matches m and the tree still
// verifies: nothing is downloaded), with the machine.yaml it checked when
// it installed a tree (nil for Unchanged), to hand to the host so the file
// is parsed once.
//
// The steps: fetch (through the Gate when m.Governor is set, with
// retries) streaming straight into packer.ExtractArchive in a stage
// M/.stage-<name>-<rand>; machine.yaml must load and validate with
// machine.Load and name m.Name; the record is written in phase
// swapping; the stage is swapped in (renameat2 RENAME_EXCHANGE, or two
// renames where the file system lacks it), the old tree becomes
// .prev-<name>; the record is written in phase installed. The tree the
// swap retires (the older previous version, or a damaged copy) is deleted
// in the background once Install returned (see WaitCleanup), while the
// machine is loaded and later installs run. On any error
// M and the record are as they were, with no stage left; after a crash,
// Recover finishes or undoes the swap. Install refuses to replace a
// directory it did not install (no record). It does not load the machine
// into the host. Its errors are *InstallError.
func (i *Installer) Install(ctx context.Context, m spec.Machine, serial uint64) (EntryOutcome, *machine.Definition, error) {
	if err := spec.ValidName(m.Name); err != nil {
		return EntryFailed, nil, &InstallError{Err: err}
	}
	unlock, err := i.locks.lock(ctx, m.Name)
	if err != nil {
		return EntryFailed, nil, &InstallError{Name: m.Name, Err: err}
	}
	defer unlock()
	defer i.discards.hold()() // old trees are deleted after, not during, an install
	out, def, err := i.install(ctx, m, serial)
	if err != nil {
		return EntryFailed, nil, &InstallError{Name: m.Name, Err: err}
	}
	return out, def, nil
}

// InstallError is a failed Install of the machine Name: `install "web":
// Err`. A caller that already names the machine (an entry's reason)
// reports Err alone.
type InstallError struct {
	// Name is the machine; empty when the name itself is invalid.
	Name string
	// Err is why the install failed.
	Err error
}

func (e *InstallError) Error() string {
	if e.Name == "" {
		return "install: " + e.Err.Error()
	}
	return fmt.Sprintf("install %q: %v", e.Name, e.Err)
}

// Unwrap returns Err.
func (e *InstallError) Unwrap() error { return e.Err }

func (i *Installer) install(ctx context.Context, m spec.Machine, serial uint64) (_ EntryOutcome, _ *machine.Definition, err error) {
	cur, err := i.settledRecord(ctx, m.Name)
	if err != nil {
		return EntryFailed, nil, err
	}
	live := i.livePath(m.Name)
	liveExists, err := dirExists(live)
	if err != nil {
		return EntryFailed, nil, err
	}
	if cur == nil && liveExists {
		return EntryFailed, nil, fmt.Errorf("%s exists but was not installed by this agent (no record in %s); move it away to let the manager install it",
			live, i.records.dir)
	}
	if cur != nil && liveExists && strings.EqualFold(cur.Checksum, m.Checksum) && strings.EqualFold(cur.VerifyChecksum, m.VerifyChecksum) {
		err := i.verifier.Verify(ctx, live, cur.VerifyChecksum, false)
		if err == nil {
			return EntryUnchanged, nil, nil
		}
		if ctx.Err() != nil {
			return EntryFailed, nil, context.Cause(ctx)
		}
		i.log.Warn("installed machine no longer verifies; reinstalling", "managed", m.Name, "error", err)
	}

	stage, err := i.newTemp(stagePrefix, m.Name)
	if err != nil {
		return EntryFailed, nil, err
	}
	crashed := false
	defer func() {
		if !crashed {
			i.dropStage(stage, err == nil)
		}
	}()
	def, x, err := i.fetchInto(ctx, m, stage)
	if err != nil {
		crashed = errors.Is(err, errCrashed)
		return EntryFailed, nil, err
	}
	if i.crashed("extract") {
		crashed = true
		return EntryFailed, nil, errCrashed
	}

	next := &recordFile{Record: Record{
		Name:           m.Name,
		Source:         redactSource(m.Source),
		Checksum:       strings.ToLower(m.Checksum),
		VerifyChecksum: strings.ToLower(m.VerifyChecksum),
		Serial:         serial,
	}}
	// An update keeps the old tree as the previous version. A repair
	// (same version, tree damaged or gone) keeps what .prev holds.
	keepOld := cur != nil && liveExists && !sameVersion(cur, next)
	switch {
	case keepOld:
		p := cur.plain()
		next.withPrevious(&p)
	case cur != nil:
		if kept, err := dirExists(i.prevPath(m.Name)); err != nil {
			return EntryFailed, nil, err
		} else if kept {
			next.withPrevious(cur.PreviousRecord)
		}
	}
	if err := i.swapIn(swap{stage: stage, next: next, cur: cur, keepOld: keepOld, extracted: x}); err != nil {
		crashed = errors.Is(err, errCrashed)
		return EntryFailed, nil, err
	}
	out := EntryInstalled
	if liveExists {
		out = EntryUpdated
	}
	i.log.Debug("machine installed", "managed", m.Name, "outcome", out, "checksum", next.Checksum, "serial", serial)
	return out, def, nil
}

// sameVersion reports whether two records pin the same archive.
func sameVersion(a, b *recordFile) bool {
	return strings.EqualFold(a.Checksum, b.Checksum) && strings.EqualFold(a.VerifyChecksum, b.VerifyChecksum)
}

// settledRecord returns name's record after finishing any swap a crash
// interrupted.
func (i *Installer) settledRecord(ctx context.Context, name string) (*recordFile, error) {
	rf, err := i.records.read(name)
	if err != nil || rf == nil || rf.Phase != PhaseSwapping {
		return rf, err
	}
	if err := i.recoverName(ctx, name, rf); err != nil {
		return nil, err
	}
	return i.records.read(name)
}

// fetchInto downloads m's archive and extracts it into stage in one pass,
// then checks its machine.yaml.
func (i *Installer) fetchInto(ctx context.Context, m spec.Machine, stage string) (*machine.Definition, *packer.Extracted, error) {
	if m.Governor != "" && i.gate != nil {
		release, err := i.gate(ctx, m.Governor)
		if err != nil {
			return nil, nil, fmt.Errorf("enter governor %q: %w", m.Governor, err)
		}
		defer release()
	}
	want := packer.Expect{Name: m.Name, Checksum: m.Checksum, VerifyChecksum: m.VerifyChecksum}
	var x *packer.Extracted
	err := i.fetcher.Fetch(ctx, m, func(r io.Reader) error {
		if i.crashed("download") {
			return errCrashed
		}
		var err error
		x, err = packer.ExtractArchive(ctx, r, stage, want, packer.ExtractOptions{Limits: i.limits, SizeHint: m.Size})
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	def, err := machine.Load(x.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("archive's %s: %w", packer.MachineFile, err)
	}
	if def.Name != m.Name {
		return nil, nil, fmt.Errorf("archive machine name %q != %q", def.Name, m.Name)
	}
	return def, x, nil
}

// crashed reports whether the test hook stops the operation at step.
func (i *Installer) crashed(step string) bool {
	return i.crashAt != nil && i.crashAt(step)
}
