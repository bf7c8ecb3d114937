package manager

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/watchers"
)

// installAll installs and loads every pending entry of results (those with
// an empty Outcome), at most cfg.Concurrency at once, and fills in their
// results. Versions that failed to load are remembered. soft ends the
// downloads and the entries not started (see ReconcileOptions.Interrupt);
// ctx ends everything.
func (r *Reconciler) installAll(ctx, soft context.Context, p *plan, results []MachineResult, opts ReconcileOptions, serial uint64) {
	sem := make(chan struct{}, r.cfg.Concurrency)
	bads := make([]*badVersion, len(results))
	var wg sync.WaitGroup
	for i := range results {
		if results[i].Outcome != "" {
			continue
		}
		m := p.entries[i].machine
		wg.Go(func() {
			acquired := false
			select {
			case sem <- struct{}{}:
				acquired = true
			case <-soft.Done():
			}
			if acquired {
				defer func() { <-sem }()
			}
			if soft.Err() != nil { // interrupted while waiting (select picks either when both are ready)
				results[i].Outcome, results[i].Reason, results[i].Retryable = EntryFailed, "not started: "+context.Cause(soft).Error(), true
				return
			}
			defer func() {
				if v := recover(); v != nil {
					r.log.Error("reconciling machine panicked", "managed", m.Name, "panic", v, "stack", string(debug.Stack()))
					results[i].Outcome, results[i].Reason, results[i].Retryable = EntryFailed, fmt.Sprintf("panic: %v", v), true
				}
			}()
			results[i], bads[i] = r.installOne(ctx, soft, m, serial, opts.Verify)
		})
	}
	wg.Wait()
	for i, b := range bads {
		if b != nil {
			r.bad[results[i].Name] = *b
		}
	}
}

// installOne makes one wanted machine installed and running: verify (when
// asked), install, load, and roll back or remove a version that does not
// load. It returns the version to remember as bad, if any. soft ends the
// verification and the install (a download, a governor wait); once a
// tree is swapped in, loading it and undoing it end only with ctx, so an
// interrupted pass never takes a good version for one that fails to load.
func (r *Reconciler) installOne(ctx, soft context.Context, m spec.Machine, serial uint64, verify VerifyMode) (MachineResult, *badVersion) {
	res := MachineResult{Name: m.Name, Checksum: m.Checksum}
	log := r.log.With("managed", m.Name)
	inst, host := r.cfg.Installer, r.cfg.Host

	if verify != VerifyNone {
		err := inst.Verify(soft, m.Name, verify == VerifyFull)
		switch {
		case err == nil, errors.Is(err, ErrNotInstalled):
		case errors.Is(err, ErrTampered):
			res.Tampered = tamperedEntry(err)
			log.Warn("installed machine was modified; reinstalling it", "tampered", res.Tampered, "error", err)
		default:
			log.Warn("verifying installed machine failed; installing checks it again", "error", err)
		}
	}

	out, def, err := inst.Install(soft, m, serial)
	if err != nil {
		res.Outcome, res.Reason, res.Retryable = EntryFailed, "install: "+installReason(err), true
		if soft.Err() != nil {
			// Stopped, not failed: the agent is stopping, or a newer spec
			// arrived; the pass that follows (now, or when the agent starts
			// again) installs it.
			log.Info("install stopped before it finished; the installed version (if any) is unchanged", "cause", context.Cause(soft))
			return res, nil
		}
		log.Error("install failed; the installed version (if any) is unchanged", "error", err)
		return res, nil
	}
	if res.Tampered != "" && out == EntryUnchanged {
		// Install must replace a tree that does not verify; if it did not,
		// say so rather than report the machine as fine.
		res.Outcome = EntryFailed
		res.Reason = fmt.Sprintf("tampered (%s), but the installer found nothing to reinstall", res.Tampered)
		log.Error("installed machine was modified but the installer left it as it is", "tampered", res.Tampered)
		return res, nil
	}
	var parsed watchers.Definition // a nil *machine.Definition must stay a nil interface
	if def != nil {
		parsed = def
	}
	lerr := host.LoadMachine(ctx, m.Name, parsed)
	if lerr == nil {
		res.Outcome = out
		if res.Tampered != "" {
			res.Reason = fmt.Sprintf("tampered (%s); reinstalled", res.Tampered)
		}
		if out != EntryUnchanged {
			log.Info("machine "+string(out), "checksum", m.Checksum, "serial", serial)
		}
		return res, nil
	}

	bad := &badVersion{checksum: m.Checksum, verifyChecksum: m.VerifyChecksum}
	switch out {
	case EntryUpdated:
		bad.reason = fmt.Sprintf("version %s failed to load: %v", short(m.Checksum), lerr)
		if err := inst.Rollback(ctx, m.Name); err != nil {
			res.Outcome, res.Reason = EntryFailed, fmt.Sprintf("%s; rolling back failed: %v", bad.reason, err)
			log.Error("new version failed to load and rolling back failed", "load_error", lerr, "error", err)
			return res, bad
		}
		if err := host.LoadMachine(ctx, m.Name, nil); err != nil {
			res.Outcome, res.Reason = EntryFailed, fmt.Sprintf("%s; rolled back, but the previous version does not load either: %v", bad.reason, err)
			log.Error("rolled back, but the previous version does not load either", "load_error", lerr, "error", err)
			return res, bad
		}
		res.Outcome, res.Reason = EntryRolledBack, bad.reason+"; the previous version is running"
		log.Error("new version failed to load; rolled back to the previous one", "error", lerr)
		return res, bad
	case EntryInstalled:
		bad.reason = fmt.Sprintf("version %s failed to load: %v", short(m.Checksum), lerr)
		uerr := host.UnloadMachine(ctx, m.Name)
		perr := inst.Purge(ctx, m.Name)
		res.Outcome, res.Reason = EntryFailed, bad.reason+"; removed again"
		if err := errors.Join(uerr, perr); err != nil {
			res.Reason = fmt.Sprintf("%s; removing it failed: %v", bad.reason, err)
		}
		log.Error("new machine failed to load", "error", lerr, "remove_error", errors.Join(uerr, perr))
		return res, bad
	default:
		res.Outcome, res.Reason, res.Retryable = EntryFailed, "load: "+lerr.Error(), true
		log.Error("installed machine does not load", "error", lerr)
		return res, nil
	}
}

// tamperedEntry names what verification found modified: the file, when
// the error says which, else the error itself.
func tamperedEntry(err error) string {
	if ee, ok := errors.AsType[*packer.EntryError](err); ok {
		return ee.Entry
	}
	return err.Error()
}

// short abbreviates a checksum for messages.
func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

// installReason is an install error without the machine's name, which the
// entry already gives.
func installReason(err error) string {
	if ie, ok := errors.AsType[*InstallError](err); ok {
		return ie.Err.Error()
	}
	return err.Error()
}
