//go:build !linux

package packer

import (
	"io/fs"
	"os"
)

// fileID is what identifies one version of a file for [TreeVerifier]. This
// portable form has only the size, modification time and mode; Linux adds
// the change time, inode and device.
type fileID struct {
	size  int64
	mtime int64 // nanoseconds since the epoch
	mode  os.FileMode
}

// statFileID returns the fileID of the open file f.
func statFileID(f *os.File) (fileID, error) {
	fi, err := f.Stat()
	if err != nil {
		return fileID{}, err
	}
	return fileIDOf(fi)
}

// fileIDOf returns the fileID a stat of a file returned (an fstat of it
// open, or an lstat of its name: a regular file's are the same).
func fileIDOf(fi fs.FileInfo) (fileID, error) {
	return fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano(), mode: fi.Mode()}, nil
}
