// Package manager turns a verified spec into the right set of running
// machines on a node: it reconciles desired against installed machines,
// fetches and verifies archives, installs them atomically with rollback,
// purges machines no longer wanted and enforces download governors.
//
// It owns the node's signing policy, resolved once: [NewTrust] turns the
// configured keys (or the ones compiled in, [PublicKey]), threshold and
// modes into a [Trust] that the [Reconciler] hands to packer.Open as it
// is. [Settings] carry it, with the spec's KV location and the other
// manager settings, from the agent's command line to the compiled-in
// manager machine as typed values. After every pass the reconciler's
// [PassReport] (the applied spec, the spec seen and what became of it, one
// result per entry) goes to a [StatusReporter], from which the agent's
// status document is written; a [ProgressReporter] receives the progress
// of long downloads.
//
// Everything a pass does is bounded: downloads by an idle timeout, a
// minimum average rate and a total deadline per archive (see
// [FetchConfig]); governor waits by governor.DefaultWait; matchers by a
// time budget (spec.DefaultMatchTimeout); and the restartable parts of a
// pass stop when [ReconcileOptions.Interrupt] ends (a newer spec). Serials
// are bounded by spec.SerialCeiling; [ResetSpecHistory] is the node
// operator's way back from a spec history gone wrong. [NudgeSubject]
// carries the unsigned reconcile nudges of `mms reconcile`.
//
// It depends on the machine.yaml model (package machine) to check an
// archive before installing it, and drives the agent's host through the
// watchers.Host interface; it never imports the runtime (package agent).
// The watchers that drive it live below it in the tree:
// manager/machineswatcher and manager/archivewatcher.
package manager
