// Package fleet is what an operator sees of the fleet, computed once for
// every view: `mms status`, `mms rollout status`, `mms put --wait` and the
// fleet web page render these values and decide nothing themselves.
//
// The inputs are the live spec (decoded with packer.Inspect, never
// verified: it is only compared) and every agent's status document in the
// nodestatus.Bucket. A [Tracker] holds them and applies KV watch entries
// one at a time (a put or delete of a status key, an update of the spec
// key), so a live view follows the buckets with a watch instead of
// re-reading them; [Read] fills one once, [Follow] keeps one current. From
// a Tracker, at a given time:
//
//   - [Tracker.View] (or [Tracker.Nodes]) gives every node: its key,
//     identity and document (or why it cannot be read), its flags (invalid,
//     rejected, failed, expired, behind, error, stale, stopped, nats, in
//     that order, each with what earned it), its first problem in one line
//     and its age, and counts by flag;
//   - [Tracker.Rollouts] gives every rollout of the live spec: its waves
//     with each node's state, the old and new versions by name, the current
//     wave, where and why it halted and when the next wave may start,
//     whether the spec pauses it, the nodes that failed and the failure
//     budget used ([Budget]), the nodes the entry's hold keeps out of the
//     waves, and a one-line [Rollout.Summary]. The
//     waves and every decision come from rollout.Evaluate, the rule the
//     agents themselves apply (rollout.Decide is the same function), never
//     a copy of it;
//   - a [Wait] gives `put --wait`'s verdict on a spec just written: each
//     node applied, failed, tolerated (failed within a rollout's budget),
//     pending or superseded and why, a summary and a progress line, and
//     whether the wait is over.
//
// Text in these values comes from the nodes (identities, reasons, errors)
// and is raw: escape it for the medium (termtext for a terminal, HTML for
// a page).
package fleet
