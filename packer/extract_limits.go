package packer

import "fmt"

// Limits bounds what [ExtractArchive] accepts, so a small hostile archive
// cannot fill the disk or exhaust inodes. A field that is zero or negative
// takes its value from [DefaultLimits].
type Limits struct {
	// MaxArchiveSize caps the compressed bytes read from the stream.
	MaxArchiveSize int64
	// MaxTotalSize caps the sum of the sizes of all regular files.
	MaxTotalSize int64
	// MaxFileSize caps the size of one regular file.
	MaxFileSize int64
	// MaxEntries caps the number of tar entries (files and directories).
	MaxEntries int
}

// DefaultLimits returns the limits used for every zero field of [Limits]:
// 256 MiB compressed, 256 MiB uncompressed in total, 64 MiB per file and
// 10,000 entries.
func DefaultLimits() Limits {
	return Limits{
		MaxArchiveSize: 256 << 20,
		MaxTotalSize:   256 << 20,
		MaxFileSize:    64 << 20,
		MaxEntries:     10_000,
	}
}

// withDefaults fills the zero or negative fields of l from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxArchiveSize <= 0 {
		l.MaxArchiveSize = d.MaxArchiveSize
	}
	if l.MaxTotalSize <= 0 {
		l.MaxTotalSize = d.MaxTotalSize
	}
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = d.MaxFileSize
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = d.MaxEntries
	}
	return l
}

// archiveFormatSize renders n bytes for messages: "256MiB", "1GiB",
// "1536 bytes".
func archiveFormatSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
