package manager

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mms-io/mms/internal/atomicfile"
	"github.com/mms-io/mms/packer"
)

// oldSlot is where the two-rename fallback parks the old live tree inside
// the stage; it cannot clash with a machine name.
const oldSlot = ".old"

// trashTree is the name of the tree inside a trash directory.
const trashTree = "tree"

// swap describes one swap: the new tree at <stage>/<name> becomes live
// under the record next (Previous already set to what .prev-<name> will
// hold). keepOld keeps the current live tree as .prev-<name> (an update);
// otherwise it is discarded and .prev-<name> stays only if next.Previous
// is set. cur is the record before the swap (nil: none).
type swap struct {
	stage   string
	next    *recordFile
	cur     *recordFile
	keepOld bool
	// fill, when set, runs once the intent is recorded; it moves the new
	// tree into the stage (rollback takes it from .prev-<name>).
	fill func(ops *swapOps) error
	// extracted, when set, is the extraction that wrote the new tree: the
	// verifier adopts its files once the tree is live, so the next cheap
	// verification does not hash them again. Otherwise the verifier
	// forgets the live path.
	extracted *packer.Extracted
}

// swapIn performs s. Every step is undone, in reverse, if a later one
// fails; after a crash the record's phase swapping tells Recover to
// finish or undo it.
//
// Why a crash leaves exactly the old or the new version: the new tree is
// durable before swapIn starts (packer.ExtractArchive flushes it, with the
// install's one syncfs; a rollback's tree was flushed when it was
// installed). Then, in order: (1) the intent record (phase swapping, the
// record before the swap as Undo) is written durably (temp file, fsync,
// rename, fsync of the record directory); (2) the renames; (3) M, the
// stage and the trash directory are fsynced, which makes the renames
// durable; (4) the final record is written durably. A crash before (1)
// leaves the old record and live tree untouched, and at most a stage that
// Recover deletes. A crash between (1) and (4) leaves phase swapping:
// Recover makes the new tree live if it verifies anywhere (it does unless
// the crash came before the renames reached it), else puts the old tree
// back from wherever the renames left it (durable since its own install,
// so it verifies), and restores the matching record. After (4) the record
// and the trees agree, since (3) came first. The tree the swap retires is
// deleted only after (4), in the background: a crash during that deletion
// leaves a trash directory no record refers to, which Recover deletes. So
// an install flushes the file system once, for the tree, and adds only a
// handful of small fsyncs.
func (i *Installer) swapIn(s swap) (err error) {
	name := s.next.Name
	live, prev, src := i.livePath(name), i.prevPath(name), filepath.Join(s.stage, name)
	ops := &swapOps{i: i}
	defer func() {
		if err != nil && !errors.Is(err, errCrashed) {
			if uerr := ops.undo(); uerr != nil {
				err = errors.Join(err, fmt.Errorf("undo the swap (Recover will finish it): %w", uerr))
			}
		}
	}()

	intent := *s.next
	intent.Phase, intent.InstalledAt, intent.Undo = PhaseSwapping, time.Time{}, nil
	if s.cur != nil {
		intent.Undo = s.cur.settled()
	}
	if err := i.records.write(&intent); err != nil {
		return err
	}
	ops.push(func() error { return i.records.restore(name, s.cur) })
	if i.crashed("record") {
		return errCrashed
	}
	if s.fill != nil {
		if err := s.fill(ops); err != nil {
			return err
		}
	}

	liveExists, err := dirExists(live)
	if err != nil {
		return err
	}
	old := "" // where the old live tree is once the new one is live
	switch {
	case !liveExists:
		if err := ops.rename(src, live); err != nil {
			return err
		}
	case !i.noExchange:
		ok, err := ops.exchange(src, live)
		if err != nil {
			return err
		}
		if ok {
			old = src
			break
		}
		fallthrough
	default:
		old = filepath.Join(s.stage, oldSlot)
		if err := ops.rename(live, old); err != nil {
			return err
		}
		if err := ops.rename(src, live); err != nil {
			return err
		}
	}

	prevExists, err := dirExists(prev)
	if err != nil {
		return err
	}
	var trash string
	if prevExists && (s.keepOld || s.next.Previous == nil) {
		if trash, err = i.newTemp(trashPrefix, name); err != nil {
			return err
		}
		ops.push(func() error { return os.Remove(trash) })
		if err := ops.rename(prev, filepath.Join(trash, trashTree)); err != nil {
			return err
		}
	}
	if s.keepOld && old != "" {
		if err := ops.rename(old, prev); err != nil {
			return err
		}
	}
	if err := syncDirs(i.machines, s.stage, trash); err != nil {
		return err
	}

	final := s.next.settled()
	final.InstalledAt = time.Now().UTC()
	if err := i.records.write(final); err != nil {
		return err
	}
	if s.extracted != nil {
		i.verifier.Adopt(live, s.extracted)
	} else {
		i.verifier.Forget(live)
	}
	if trash != "" {
		i.discards.discard(trash)
	}
	return nil
}

// swapOps performs renames and remembers how to undo them.
type swapOps struct {
	i       *Installer
	undos   []func() error
	renames int
}

func (o *swapOps) push(undo func() error) { o.undos = append(o.undos, undo) }

// rename renames from to to; the test hook may stop right after it.
func (o *swapOps) rename(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return err
	}
	o.push(func() error { return os.Rename(to, from) })
	return o.step()
}

// exchange swaps the directories a and b atomically; ok is false when the
// file system cannot, and nothing happened.
func (o *swapOps) exchange(a, b string) (ok bool, err error) {
	ok, err = exchangeDirs(a, b)
	if !ok || err != nil {
		return ok, err
	}
	o.push(func() error {
		_, err := exchangeDirs(a, b)
		return err
	})
	return true, o.step()
}

// step counts a rename and gives the test hook its chance to crash.
func (o *swapOps) step() error {
	o.renames++
	if o.i.crashed(fmt.Sprintf("rename%d", o.renames)) {
		return errCrashed
	}
	return nil
}

// undo reverts every step, last first, and reports what failed.
func (o *swapOps) undo() error {
	var errs []error
	for k := len(o.undos) - 1; k >= 0; k-- {
		if err := o.undos[k](); err != nil {
			errs = append(errs, err)
		}
	}
	o.undos = nil
	return errors.Join(errs...)
}

// syncDirs flushes every named directory (empty names are skipped).
func syncDirs(dirs ...string) error {
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if err := atomicfile.SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}
