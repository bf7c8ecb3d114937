//go:build !linux

package manager

// exchangeDirs reports that atomic exchange is not available here; the
// caller falls back to two renames.
func exchangeDirs(a, b string) (ok bool, err error) { return false, nil }
