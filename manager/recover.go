package manager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mms-io/mms/internal/atomicfile"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// Recover runs at agent start, before any Install: it finishes or undoes
// every swap a crash interrupted (records in phase swapping), removes the
// stage and trash directories left in M (by a crash, or by a background
// deletion a crash interrupted; it first waits for this installer's own)
// and the temp files left in the record store, and drops a recorded
// previous version whose .prev-<name> is gone. Every problem is reported;
// the other machines are still recovered.
//
// A swap is finished forward when the new tree is complete: live already
// verifies against the record's verify_checksum (the crash came after the
// exchange or the second rename), or a stage holds a tree that does (the
// crash came before the swap or between the two renames; it is renamed
// into place). Otherwise the swap is undone: the old tree (live, or found
// in the stage or trash by its checksum) is put back and the record
// before the swap restored. Either way live is exactly the old or the new
// tree afterwards.
func (i *Installer) Recover(ctx context.Context) error {
	if err := i.discards.wait(ctx); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	var errs []error
	if err := i.records.clean(); err != nil {
		errs = append(errs, err)
	}
	records, err := i.records.list()
	if err != nil {
		errs = append(errs, err)
	}
	for name, rf := range records {
		if err := i.recoverLocked(ctx, name, rf); err != nil {
			errs = append(errs, fmt.Errorf("recover %q: %w", name, err))
		}
	}
	entries, err := os.ReadDir(i.machines)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("recover: %w", err))...)
	}
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, stagePrefix) && !strings.HasPrefix(n, trashPrefix) {
			continue
		}
		owner, _ := tempOwner(n, stagePrefix)
		if owner == "" {
			owner, _ = tempOwner(n, trashPrefix)
		}
		if _, ok := records[owner]; !ok && owner != "" {
			if _, err := os.Lstat(i.records.path(owner)); err == nil {
				// Its record is unreadable: the stage may hold the only good tree.
				errs = append(errs, fmt.Errorf("recover: left %s in place: the record of %q is unreadable", n, owner))
				continue
			}
		}
		if err := i.removeLeftover(ctx, owner, filepath.Join(i.machines, n)); err != nil {
			errs = append(errs, err)
		}
	}
	// A crash test may stop here to look at what recovery left.
	_ = i.crashed("recovered")
	return errors.Join(errs...)
}

// recoverLocked settles one machine's record under its lock.
func (i *Installer) recoverLocked(ctx context.Context, name string, rf *recordFile) error {
	unlock, err := i.locks.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	if rf.Phase == PhaseSwapping {
		return i.recoverName(ctx, name, rf)
	}
	// A recorded previous version whose tree is gone cannot be rolled back to.
	if rf.Previous != nil {
		ok, err := dirExists(i.prevPath(name))
		if err != nil {
			return err
		}
		if !ok {
			rf.withPrevious(nil)
			return i.records.write(rf)
		}
	}
	return nil
}

// removeLeftover deletes a stage or trash directory, under its machine's
// lock when the name says which machine it belongs to.
func (i *Installer) removeLeftover(ctx context.Context, owner, dir string) error {
	if spec.ValidName(owner) == nil {
		unlock, err := i.locks.lock(ctx, owner)
		if err != nil {
			return err
		}
		defer unlock()
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove leftover %s: %w", dir, err)
	}
	i.log.Info("removed leftover of an interrupted install", "dir", dir)
	return nil
}

// recoverName finishes or undoes the swap recorded in r (phase swapping)
// for name; the caller holds name's lock.
func (i *Installer) recoverName(ctx context.Context, name string, r *recordFile) error {
	// The trees it looks for may be in any stage or trash directory: none
	// may be half deleted under it.
	if err := i.discards.wait(ctx); err != nil {
		return err
	}
	rc := &recovery{i: i, name: name}
	if err := rc.scan(); err != nil {
		return err
	}
	forward, err := rc.makeLive(ctx, r)
	if err != nil {
		return err
	}
	final := r.settled()
	want := r.PreviousRecord
	if !forward {
		final = nil
		if r.Undo != nil {
			final = r.Undo.settled()
			want = final.PreviousRecord
		}
		if err := rc.restoreOld(ctx, r.Undo); err != nil {
			return err
		}
	}
	if final != nil {
		kept, err := rc.settlePrev(ctx, want)
		if err != nil {
			return err
		}
		if !kept {
			final.withPrevious(nil)
		}
		if final.InstalledAt.IsZero() {
			final.InstalledAt = time.Now().UTC()
		}
	} else if _, err := rc.settlePrev(ctx, nil); err != nil {
		return err
	}
	if err := rc.cleanup(); err != nil {
		return err
	}
	if err := i.records.restore(name, final); err != nil {
		return err
	}
	i.verifier.Forget(i.livePath(name))
	i.log.Warn("recovered an interrupted install", "managed", name, "finished", forward)
	return nil
}

// recovery is the state of one recoverName call.
type recovery struct {
	i    *Installer
	name string
	// trees are the candidate trees in the machine's stage and trash
	// directories; temps are those directories.
	trees []string
	temps []string
}

// scan finds the machine's stage and trash directories and the trees in
// them.
func (rc *recovery) scan() error {
	entries, err := os.ReadDir(rc.i.machines)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		s, _ := tempOwner(n, stagePrefix)
		t, _ := tempOwner(n, trashPrefix)
		if s != rc.name && t != rc.name {
			continue
		}
		dir := filepath.Join(rc.i.machines, n)
		rc.temps = append(rc.temps, dir)
		for _, sub := range []string{rc.name, oldSlot, trashTree} {
			p := filepath.Join(dir, sub)
			if ok, _ := dirExists(p); ok {
				rc.trees = append(rc.trees, p)
			}
		}
	}
	return nil
}

// verifies reports whether dir is a complete tree with SHA256SUMS sum.
func (rc *recovery) verifies(ctx context.Context, dir, sum string) bool {
	return packer.VerifyTree(ctx, dir, sum) == nil
}

// find returns the first candidate tree that verifies against sum.
func (rc *recovery) find(ctx context.Context, sum string) string {
	for _, t := range rc.trees {
		if ok, _ := dirExists(t); ok && rc.verifies(ctx, t, sum) {
			return t
		}
	}
	return ""
}

// makeLive makes the new tree of r live if it is complete anywhere and
// reports whether it did.
func (rc *recovery) makeLive(ctx context.Context, r *recordFile) (bool, error) {
	live := rc.i.livePath(rc.name)
	liveExists, err := dirExists(live)
	if err != nil {
		return false, err
	}
	if liveExists && rc.verifies(ctx, live, r.VerifyChecksum) {
		return true, nil
	}
	src := rc.find(ctx, r.VerifyChecksum)
	if src == "" {
		return false, nil
	}
	return true, rc.replaceLive(src)
}

// restoreOld puts the tree of undo back in place, if it can be found, or
// removes a live tree this agent created when there was none before.
func (rc *recovery) restoreOld(ctx context.Context, undo *recordFile) error {
	live := rc.i.livePath(rc.name)
	liveExists, err := dirExists(live)
	if err != nil {
		return err
	}
	if undo == nil {
		// A live tree here can only be the broken new one: Install never
		// replaces a directory it has no record of.
		if liveExists {
			return rc.discard(live)
		}
		return nil
	}
	if liveExists && rc.verifies(ctx, live, undo.VerifyChecksum) {
		return nil
	}
	if src := rc.find(ctx, undo.VerifyChecksum); src != "" {
		return rc.replaceLive(src)
	}
	return nil // the old tree was damaged already; Verify will report it
}

// replaceLive renames src into place, moving a live tree aside first.
func (rc *recovery) replaceLive(src string) error {
	live := rc.i.livePath(rc.name)
	if ok, err := dirExists(live); err != nil {
		return err
	} else if ok {
		if err := rc.discard(live); err != nil {
			return err
		}
	}
	if err := os.Rename(src, live); err != nil {
		return err
	}
	return syncDirs(rc.i.machines, filepath.Dir(src))
}

// discard moves dir into a fresh trash directory, where it stays a
// candidate until cleanup.
func (rc *recovery) discard(dir string) error {
	trash, err := rc.i.newTemp(trashPrefix, rc.name)
	if err != nil {
		return err
	}
	rc.temps = append(rc.temps, trash)
	to := filepath.Join(trash, trashTree)
	if err := os.Rename(dir, to); err != nil {
		return err
	}
	rc.trees = append(rc.trees, to)
	return nil
}

// settlePrev makes .prev-<name> hold the tree of want (nil: nothing),
// looking for it among the candidates if .prev does not; kept reports
// whether it does in the end.
func (rc *recovery) settlePrev(ctx context.Context, want *Record) (kept bool, err error) {
	prev := rc.i.prevPath(rc.name)
	prevExists, err := dirExists(prev)
	if err != nil {
		return false, err
	}
	if want != nil && prevExists && rc.verifies(ctx, prev, want.VerifyChecksum) {
		return true, nil
	}
	src := ""
	if want != nil {
		src = rc.find(ctx, want.VerifyChecksum)
	}
	if prevExists {
		if err := rc.discard(prev); err != nil {
			return false, err
		}
	}
	if src == "" {
		return false, nil
	}
	if err := os.Rename(src, prev); err != nil {
		return false, err
	}
	return true, nil
}

// cleanup removes the machine's stage and trash directories.
func (rc *recovery) cleanup() error {
	if err := atomicfile.SyncDir(rc.i.machines); err != nil {
		return err
	}
	var errs []error
	for _, t := range rc.temps {
		if err := os.RemoveAll(t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
