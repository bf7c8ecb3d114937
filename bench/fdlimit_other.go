//go:build !unix

package bench

// fdLimit has no limit to raise where file descriptors are not limited the
// Unix way.
func fdLimit(need int) (int, error) { return need, nil }
