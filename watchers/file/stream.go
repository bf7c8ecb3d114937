package filewatcher

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

// Stream asks for a check whenever the file system reports an event for
// the file. It watches the file's directory, so creation, replacement by
// rename and removal are all seen. It fails when the directory cannot be
// watched (the Runner retries with backoff; the interval still applies).
func (w *Watcher) Stream(ctx context.Context, trigger func()) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("start file notifications: %w", err)
	}
	defer fw.Close()
	dir := filepath.Dir(w.path)
	if err := fw.Add(dir); err != nil {
		return fmt.Errorf("watch directory %s: %w", dir, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return fmt.Errorf("file notifications for %s closed", dir)
			}
			if filepath.Clean(ev.Name) == w.path {
				trigger()
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return fmt.Errorf("file notifications for %s closed", dir)
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				trigger() // events were lost: look
				continue
			}
			return fmt.Errorf("file notifications for %s: %w", dir, err)
		}
	}
}
