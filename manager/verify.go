package manager

import (
	"context"
	"errors"
	"fmt"

	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// Verify re-checks M/<name> against the verify_checksum of its record:
// SHA256SUMS itself, the exact set of files, every digest, and no unsafe
// file types or modes. With full false, files whose size, times and inode
// are unchanged since they last verified are not hashed again. A tree that
// differs, or is missing, is an error wrapping ErrTampered that names the
// file; a machine without a record is ErrNotInstalled. Deciding to
// reinstall is the caller's job.
func (i *Installer) Verify(ctx context.Context, name string, full bool) error {
	if err := spec.ValidName(name); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	unlock, err := i.locks.lock(ctx, name)
	if err != nil {
		return fmt.Errorf("verify %q: %w", name, err)
	}
	defer unlock()
	rf, err := i.settledRecord(ctx, name)
	if err != nil {
		return fmt.Errorf("verify %q: %w", name, err)
	}
	if rf == nil {
		return fmt.Errorf("verify %q: %w", name, ErrNotInstalled)
	}
	live := i.livePath(name)
	ok, err := dirExists(live)
	if err != nil {
		return fmt.Errorf("verify %q: %w", name, err)
	}
	if !ok {
		return fmt.Errorf("verify %q: %w: %s is missing", name, ErrTampered, live)
	}
	err = i.verifier.Verify(ctx, live, rf.VerifyChecksum, full)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, packer.ErrChecksumMismatch), errors.Is(err, packer.ErrSumsMismatch), errors.Is(err, packer.ErrUnsafeEntry):
		return fmt.Errorf("verify %q: %w: %w", name, ErrTampered, err)
	}
	return fmt.Errorf("verify %q: %w", name, err)
}

// Installed returns the records of the machines this agent installed, by
// name. A record that cannot be read is reported in the error; the others
// are still returned.
func (i *Installer) Installed() (map[string]Record, error) {
	files, err := i.records.list()
	out := make(map[string]Record, len(files))
	for name, rf := range files {
		out[name] = rf.plain()
	}
	return out, err
}
