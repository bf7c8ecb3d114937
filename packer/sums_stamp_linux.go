package packer

import (
	"errors"
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
