package manager

import "context"

// cleanupWaiter is implemented by installers that delete retired trees in
// the background (the manager's Installer, see [Installer.WaitCleanup]).
type cleanupWaiter interface {
	WaitCleanup(ctx context.Context) error
}

// waitCleanup lets the installer's background deletions finish before a
// pass reports: the new versions already run (the deletions overlapped
// loading them), and what the pass reports, and the next pass starts from,
// is a settled machines directory. A deletion still running when ctx ends
// goes on; Recover removes what a crash interrupts.
func (r *Reconciler) waitCleanup(ctx context.Context) {
	w, ok := r.cfg.Installer.(cleanupWaiter)
	if !ok {
		return
	}
	if err := w.WaitCleanup(ctx); err != nil {
		r.log.Warn("pass ends before the old trees are deleted", "error", err)
	}
}
