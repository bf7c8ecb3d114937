package packer

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// fileID is what identifies one version of a file for [TreeVerifier]: a
// rewrite, a rename over it or a chmod changes at least one field. The
// change time cannot be set from user space, so resetting the modification
// time after an edit does not hide it.
type fileID struct {
	size         int64
	mtime, ctime int64 // nanoseconds since the epoch
	ino, dev     uint64
	mode         uint32
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
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, errors.New("no stat_t")
	}
	return fileID{
		size:  st.Size,
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
		ino:   st.Ino,
		dev:   st.Dev,
		mode:  st.Mode,
	}, nil
}
