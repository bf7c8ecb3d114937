//go:build !unix

package fdlimit

// Raise has no limit to raise where file descriptors are not limited the
// Unix way; it returns need, or 1<<20 for need ≤ 0.
func Raise(need int) (int, error) {
	if need <= 0 {
		return 1 << 20, nil
	}
	return need, nil
}
