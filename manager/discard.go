package manager

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// maxDiscardQueue bounds the directories waiting for background deletion;
// past it the caller deletes the directory itself, so old trees never pile
// up faster than they are removed.
const maxDiscardQueue = 8

// discarder deletes the installer's dead directories (stage and trash
// directories whose content no record refers to any more) in the
// background, so an install returns as soon as its swap is durable instead
// of after deleting the tree it retired: removing a 2,000-file tree costs
// about as much as extracting one.
//
// One goroutine at a time deletes, in order; it runs only while there is
// work and exits when the queue is empty. It gives way to installs: while
// one runs (see hold), it stops between two batches of files, so a
// deletion never competes with an extraction for the disk (an upgrade
// right after another would otherwise write its 2,000 files while the
// tree two versions back is being deleted). A deletion a crash interrupts
// leaves a stage or trash directory, which Recover removes at the next
// start: the names it can leave are exactly the ones it is given.
// Deletions are logged.
//
// The installer never reads a discarded directory again, with one
// exception: crash recovery looks for trees in every stage and trash
// directory, so it waits for the discarder first (wait) and never finds
// a tree half deleted under it.
type discarder struct {
	log *slog.Logger
	// crashAt, when set, is asked at step "discard" before each deletion;
	// true skips the deletion, as if the process had died (tests).
	crashAt func(step string) bool

	mu      sync.Mutex
	queue   []string
	running bool
	idle    chan struct{} // closed while nothing is queued or being deleted
	holds   int           // installs under way
	free    chan struct{} // closed while holds is 0
	waiters int           // calls of wait under way
	hurry   chan struct{} // closed while waiters is above 0: deletion goes on despite holds
}

func newDiscarder(log *slog.Logger, crashAt func(step string) bool) *discarder {
	idle, free := make(chan struct{}), make(chan struct{})
	close(idle)
	close(free)
	return &discarder{log: log, crashAt: crashAt, idle: idle, free: free, hurry: make(chan struct{})}
}

// hold pauses background deletion until the returned release is called
// (by every holder): an install holds it while it extracts and swaps.
func (d *discarder) hold() (release func()) {
	d.mu.Lock()
	if d.holds == 0 {
		d.free = make(chan struct{})
	}
	d.holds++
	d.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.holds--; d.holds == 0 {
				close(d.free)
			}
		})
	}
}

// yield waits while an install holds the discarder, unless someone waits
// for the deletion to end (recovery does, within an install: yielding then
// would wait for itself).
func (d *discarder) yield() {
	d.mu.Lock()
	free, hurry := d.free, d.hurry
	d.mu.Unlock()
	select {
	case <-free:
	case <-hurry:
	}
}

// discard deletes dir in the background, or at once when the queue is
// full.
func (d *discarder) discard(dir string) {
	d.mu.Lock()
	if len(d.queue) >= maxDiscardQueue {
		d.mu.Unlock()
		d.log.Warn("background deletion is behind; deleting now", "dir", dir, "queued", maxDiscardQueue)
		d.remove(dir, nil)
		return
	}
	d.queue = append(d.queue, dir)
	if !d.running {
		d.running = true
		d.idle = make(chan struct{})
		go d.run()
	}
	d.mu.Unlock()
}

// run deletes queued directories until there are none.
func (d *discarder) run() {
	for {
		d.mu.Lock()
		if len(d.queue) == 0 {
			d.running = false
			close(d.idle)
			d.mu.Unlock()
			return
		}
		dir := d.queue[0]
		d.queue = d.queue[1:]
		d.mu.Unlock()
		d.remove(dir, d.yield)
	}
}

// discardBatch is how many entries the background deletion removes
// between two looks at whether an install waits.
const discardBatch = 64

// remove deletes dir and logs the outcome; a failure leaves it for
// Recover. yield, when set, is called between batches of entries.
func (d *discarder) remove(dir string, yield func()) {
	if d.crashAt != nil && d.crashAt("discard") {
		return
	}
	start := time.Now()
	if yield != nil {
		removeYielding(dir, yield)
	}
	if err := os.RemoveAll(dir); err != nil {
		d.log.Error("cannot remove old tree; the next start retries", "dir", dir, "error", err)
		return
	}
	d.log.Debug("removed old tree", "dir", dir, "took", time.Since(start))
}

// removeYielding deletes what it can of the tree under dir (not dir
// itself), depth first, calling yield before every discardBatch entries.
// It stops at the first error: os.RemoveAll then deletes the rest, and
// reports.
func removeYielding(dir string, yield func()) {
	n := 0
	var walk func(dir string) bool
	walk = func(dir string) bool {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return false
		}
		for _, e := range entries {
			if n%discardBatch == 0 {
				yield()
			}
			n++
			p := filepath.Join(dir, e.Name())
			if e.IsDir() && !walk(p) {
				return false
			}
			if os.Remove(p) != nil {
				return false
			}
		}
		return true
	}
	walk(dir)
}

// wait returns once nothing is queued or being deleted, or when ctx is
// done.
func (d *discarder) wait(ctx context.Context) error {
	d.mu.Lock()
	if d.waiters++; d.waiters == 1 {
		close(d.hurry)
	}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		if d.waiters--; d.waiters == 0 {
			d.hurry = make(chan struct{})
		}
		d.mu.Unlock()
	}()
	for {
		d.mu.Lock()
		idle, running := d.idle, d.running
		d.mu.Unlock()
		if !running {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// WaitCleanup waits until the old trees the installer deletes in the
// background (the tree an update retires, a purged machine's) are gone,
// or until ctx is done. Install, Rollback and Purge return before that
// deletion ends; a pass that wants the disk settled before it reports
// calls this.
func (i *Installer) WaitCleanup(ctx context.Context) error {
	return i.discards.wait(ctx)
}

// dropStage removes a stage directory once its operation is over. After a
// failure it is removed at once, so a failed operation leaves M exactly as
// it was. After a swap it holds nothing, or the tree the swap retired (a
// damaged copy a repair replaced, the version a rollback left), which is
// deleted in the background.
func (i *Installer) dropStage(stage string, swapped bool) {
	if swapped {
		if err := os.Remove(stage); err == nil || errors.Is(err, fs.ErrNotExist) {
			return
		}
		i.discards.discard(stage)
		return
	}
	if err := os.RemoveAll(stage); err != nil {
		i.log.Error("cannot remove stage", "dir", stage, "error", err)
	}
}
