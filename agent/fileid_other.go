//go:build !unix

package agent

import "io/fs"

// fileID has no inode to offer on this platform; changes are detected by
// machine.yaml's hash alone.
func fileID(st fs.FileInfo) (dev, ino uint64) { return 0, 0 }
