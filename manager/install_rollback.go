package manager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mms-io/mms/internal/atomicfile"
	"github.com/mms-io/mms/packer"
)

// ErrNoPrevious means a rollback was asked for a machine that has no
// previous version kept.
var ErrNoPrevious = errors.New("no previous version to roll back to")

// Rollback puts the previous version of name (.prev-<name>) back in place
// with the same swap as Install, after checking it still verifies; the
// version that was live is discarded and the record describes the
// previous version again (with no previous of its own). A machine without
// a record is ErrNotInstalled; one without a kept version, ErrNoPrevious.
func (i *Installer) Rollback(ctx context.Context, name string) error {
	unlock, err := i.locks.lock(ctx, name)
	if err != nil {
		return fmt.Errorf("roll back %q: %w", name, err)
	}
	defer unlock()
	if err := i.rollback(ctx, name); err != nil {
		return fmt.Errorf("roll back %q: %w", name, err)
	}
	return nil
}

func (i *Installer) rollback(ctx context.Context, name string) (err error) {
	cur, err := i.settledRecord(ctx, name)
	if err != nil {
		return err
	}
	if cur == nil {
		return ErrNotInstalled
	}
	prev := i.prevPath(name)
	ok, err := dirExists(prev)
	if err != nil {
		return err
	}
	if cur.PreviousRecord == nil || !ok {
		return ErrNoPrevious
	}
	if err := packer.VerifyTree(ctx, prev, cur.PreviousRecord.VerifyChecksum); err != nil {
		return fmt.Errorf("previous version no longer verifies: %w", err)
	}
	stage, err := i.newTemp(stagePrefix, name)
	if err != nil {
		return err
	}
	crashed := false
	defer func() {
		if !crashed {
			i.dropStage(stage, err == nil)
		}
	}()
	next := &recordFile{Record: *cur.PreviousRecord}
	err = i.swapIn(swap{stage: stage, next: next, cur: cur, fill: func(ops *swapOps) error {
		return ops.rename(prev, filepath.Join(stage, name))
	}})
	if err != nil {
		crashed = errors.Is(err, errCrashed)
		return err
	}
	i.log.Debug("machine rolled back", "managed", name, "checksum", next.Checksum, "from", cur.Checksum)
	return nil
}

// Purge removes a machine this agent installed: the live tree and
// .prev-<name> are renamed into trash directories (so the live name
// disappears atomically), the record is removed, then the trash is
// deleted in the background (see WaitCleanup). A crash leaves only trash,
// which Recover deletes. A machine without a record is ErrNotInstalled
// and is never touched.
func (i *Installer) Purge(ctx context.Context, name string) error {
	unlock, err := i.locks.lock(ctx, name)
	if err != nil {
		return fmt.Errorf("purge %q: %w", name, err)
	}
	defer unlock()
	if err := i.purge(ctx, name); err != nil {
		return fmt.Errorf("purge %q: %w", name, err)
	}
	return nil
}

func (i *Installer) purge(ctx context.Context, name string) error {
	cur, err := i.settledRecord(ctx, name)
	if err != nil {
		return err
	}
	if cur == nil {
		return ErrNotInstalled
	}
	var trashes []string
	for _, dir := range []string{i.livePath(name), i.prevPath(name)} {
		ok, err := dirExists(dir)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		trash, err := i.newTemp(trashPrefix, name)
		if err != nil {
			return err
		}
		trashes = append(trashes, trash)
		if err := os.Rename(dir, filepath.Join(trash, trashTree)); err != nil {
			os.Remove(trash)
			return err
		}
		if i.crashed(fmt.Sprintf("purge-rename%d", len(trashes))) {
			return errCrashed
		}
	}
	if err := atomicfile.SyncDir(i.machines); err != nil {
		return err
	}
	if err := i.records.remove(name); err != nil {
		return err
	}
	if i.crashed("purge-record") {
		return errCrashed
	}
	i.verifier.Forget(i.livePath(name))
	for _, t := range trashes {
		i.discards.discard(t)
	}
	i.log.Debug("machine purged", "managed", name, "checksum", cur.Checksum)
	return nil
}
