package packer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/bits"
	"os"
	"runtime"
	"sync"
)

// Sizing of the writer pool of one extraction.
const (
	// archivePoolFileMax is the largest file handed to the pool: its
	// content is read from the tar stream into memory first. Larger files
	// are written by the extracting goroutine as they are read.
	archivePoolFileMax = 512 << 10
	// archivePoolDepth is how many files may wait for or be in the hands
	// of a writer, which bounds the pool's buffers to
	// archivePoolDepth × archivePoolFileMax.
	archivePoolDepth = 8
	// archivePoolMaxWriters caps the writers.
	archivePoolMaxWriters = 4
)

// archivePoolWriters is the number of writers: one per CPU, at least two
// (file creation is kernel work that overlaps the gunzip goroutine's) and
// at most archivePoolMaxWriters.
func archivePoolWriters() int {
	return max(2, min(runtime.GOMAXPROCS(0), archivePoolMaxWriters))
}

// archiveJob is one small file for the pool: its whole content, read from
// the tar stream.
type archiveJob struct {
	entry string      // the tar entry's name, for errors
	path  string      // the file, under the stage
	rel   string      // the file, under <Name>/: its key in written
	perm  os.FileMode // its mode
	data  []byte      // its content; a buffer of the pool's
	f     *os.File    // already created (creators that are not concurrent), or nil
}

// archivePool writes small files in a few goroutines while the extracting
// goroutine goes on reading the tar stream: creating a file is a system
// call that can cost as much as inflating its content (on ext4 without a
// journal, up to a millisecond shortly after many files were deleted
// nearby), so the two overlap. Each writer hashes a file's bytes as it writes them (nothing
// is read back). The first failure stops the pool: later jobs are dropped
// and every call then returns that error.
type archivePool struct {
	x    *archiveExtraction
	jobs chan archiveJob
	free chan []byte // buffers; receiving one is a slot in the pool
	wg   sync.WaitGroup

	mu     sync.Mutex
	err    error         // the first failure
	failed chan struct{} // closed with err set
}

// startArchivePool starts the writers of x.
func startArchivePool(ctx context.Context, x *archiveExtraction) *archivePool {
	p := &archivePool{
		x:      x,
		jobs:   make(chan archiveJob, archivePoolDepth),
		free:   make(chan []byte, archivePoolDepth),
		failed: make(chan struct{}),
	}
	for range archivePoolDepth {
		p.free <- nil
	}
	for range archivePoolWriters() {
		p.wg.Go(func() { p.writer(ctx) })
	}
	return p
}

// buffer waits for a free slot and returns its buffer, sized n.
func (p *archivePool) buffer(ctx context.Context, n int) ([]byte, error) {
	select {
	case b := <-p.free:
		if cap(b) < n {
			b = make([]byte, n, max(4<<10, 1<<bits.Len(uint(n-1))))
		}
		return b[:n], nil
	case <-p.failed:
		return nil, p.failure()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// submit hands j (whose data came from buffer) to the writers. It never
// blocks: the slot was taken by buffer.
func (p *archivePool) submit(j archiveJob) { p.jobs <- j }

// release gives an unused buffer back.
func (p *archivePool) release(b []byte) { p.free <- b[:0] }

// wait stops the writers once they have written every submitted file and
// returns the first failure.
func (p *archivePool) wait() error {
	close(p.jobs)
	p.wg.Wait()
	return p.failure()
}

// failure returns the first failure, or nil.
func (p *archivePool) failure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// fail records err unless a failure was recorded before.
func (p *archivePool) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
		close(p.failed)
	}
}

// writer writes jobs until the pool is stopped.
func (p *archivePool) writer(ctx context.Context) {
	h := sha256.New()
	var sum [sha256.Size]byte
	for j := range p.jobs {
		err := p.failure()
		if err == nil {
			err = ctx.Err()
		}
		if err == nil {
			h.Reset()
			h.Write(j.data)
			var id fileID
			if id, err = p.write(j); err == nil {
				p.x.setDigest(j.rel, hex.EncodeToString(h.Sum(sum[:0])), id)
			}
		} else if j.f != nil {
			j.f.Close()
		}
		if err != nil {
			p.fail(err)
		}
		p.release(j.data)
	}
}

// write creates j's file (unless it is open already), writes its content
// with the right mode and closes it, returning the file's identity once
// written.
func (p *archivePool) write(j archiveJob) (fileID, error) {
	f := j.f
	if f == nil {
		var err error
		if f, err = p.x.creator.create(j.path, j.perm); err != nil {
			return fileID{}, err
		}
	}
	err := archiveWriteFile(f, j.data, j.perm, p.x.noSync)
	var id fileID
	if err == nil {
		if id, err = statFileID(f); err != nil {
			err = fmt.Errorf("stat: %w", err)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fileID{}, fmt.Errorf("write %q: %w", j.entry, err)
	}
	return id, nil
}

// archiveWriteFile gives f mode perm exactly, whatever the umask, writes
// data and flushes it unless noSync (where the platform flushes per file).
func archiveWriteFile(f *os.File, data []byte, perm os.FileMode, noSync bool) error {
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("set mode: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := archiveAfterFile(f, noSync); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}
