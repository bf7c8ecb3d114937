package packer

import "math/bits"

// archiveMinBufSize is the smallest buffer a copyBuf or a decompressed
// chunk starts with.
const archiveMinBufSize = 16 << 10

// copyBuf is a copy buffer sized to what is copied: it starts empty and
// grows, in powers of two from archiveMinBufSize, to the largest size
// asked for, at most archiveCopyBufSize. Most machines are a few small
// files, and a buffer of the largest size, allocated (and zeroed) for
// every install and every tree check, was most of the memory an install
// allocated (and the collector's work a fleet of them caused).
type copyBuf struct{ b []byte }

// get returns a buffer of min(n, archiveCopyBufSize) bytes, at least one.
func (c *copyBuf) get(n int64) []byte {
	want := int(min(max(n, 1), archiveCopyBufSize))
	if len(c.b) < want {
		c.b = make([]byte, bufSizeFor(want))
	}
	return c.b[:want]
}

// bufSizeFor is the power of two at least n, archiveMinBufSize at least
// and archiveCopyBufSize at most.
func bufSizeFor(n int) int {
	if n <= archiveMinBufSize {
		return archiveMinBufSize
	}
	return min(1<<bits.Len(uint(n-1)), archiveCopyBufSize)
}
