// Package manager turns a verified spec into the right set of running
// machines on a node: it reconciles desired against installed machines,
// fetches and verifies archives, installs them atomically with rollback,
// purges machines no longer wanted and enforces download governors.
package manager
