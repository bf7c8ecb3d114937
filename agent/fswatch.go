package agent

import (
	"context"
	"os"

	"github.com/fsnotify/fsnotify"
)

// watchFS starts file-system notifications on MachinesDir: any event there
// or in a watched machine directory requests a scan on scanReq. The
// forwarding goroutine exits on ctx or when the watcher is closed.
func (l *hostLoop) watchFS(ctx context.Context, scanReq chan<- struct{}) (*fsnotify.Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := fw.Add(l.h.cfg.MachinesDir); err != nil {
		fw.Close()
		return nil, err
	}
	l.fw = fw
	l.wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-fw.Events:
				if !ok {
					return
				}
				select {
				case scanReq <- struct{}{}:
				default:
				}
			case err, ok := <-fw.Errors:
				if !ok {
					return
				}
				l.h.log.Warn("file-system notification error; the periodic scan covers it", "error", err)
			}
		}
	})
	return fw, nil
}

// watchDir watches a machine directory, again when it was replaced by a
// new directory (a new inode) at the same path.
func (l *hostLoop) watchDir(dir string) {
	if l.fw == nil {
		return
	}
	st, err := os.Stat(dir)
	if err != nil {
		return
	}
	_, ino := fileID(st)
	if prev, ok := l.watched[dir]; ok {
		if prev == ino {
			return
		}
		_ = l.fw.Remove(dir) // the old inode's watch; it may already be gone
	}
	if err := l.fw.Add(dir); err != nil {
		l.h.log.Warn("watch machine directory failed; the periodic scan covers it", "dir", dir, "error", err)
		return
	}
	l.watched[dir] = ino
}

// pruneWatches drops watches of directories that are gone.
func (l *hostLoop) pruneWatches(keep map[string]bool) {
	for dir := range l.watched {
		if !keep[dir] {
			if l.fw != nil {
				_ = l.fw.Remove(dir)
			}
			delete(l.watched, dir)
		}
	}
}
