//go:build !unix

package bench

// syncDisks does nothing where sync(2) is missing.
func syncDisks() {}
