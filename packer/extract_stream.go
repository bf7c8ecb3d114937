package packer

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
)

// archiveStreamDepth is how many decompressed chunks the gunzip goroutine
// may run ahead of the extraction.
const archiveStreamDepth = 4

// archiveStream hashes and gunzips an archive in its own goroutine and
// serves the decompressed bytes through Read, so inflating overlaps with
// the file system work of the extraction. The goroutine reads the source
// to the end of the gzip member and then checks that nothing follows.
//
// Read is for the one extracting goroutine; stop must be called before hr
// is looked at.
type archiveStream struct {
	readBuf int // the size of the buffer the source is read through
	hr      *archiveHashReader
	chunks  chan archiveChunk
	free    chan []byte
	done    chan struct{}
	wg      sync.WaitGroup
	stopped bool
	cur     archiveChunk
	off     int
}

// archiveChunk is one piece of decompressed data, or the error that ended
// the stream (io.EOF after a clean end).
type archiveChunk struct {
	buf []byte
	n   int
	err error
}

// archiveReadBufSize is the size of the buffer the archive is read through
// when its size is not known.
const archiveReadBufSize = 64 << 10

// startArchiveStream starts the gunzip goroutine on r, whose size is
// sizeHint bytes when that is above 0. It exits when the stream ends, when
// stop is called, or when ctx is done.
func startArchiveStream(ctx context.Context, r io.Reader, maxArchive, sizeHint int64) *archiveStream {
	readBuf := archiveReadBufSize
	if sizeHint > 0 {
		// One byte more: the check that nothing follows the gzip member.
		readBuf = bufSizeFor(int(min(sizeHint+1, archiveCopyBufSize)))
	}
	s := &archiveStream{
		readBuf: readBuf,
		hr:      &archiveHashReader{r: r, h: sha256.New(), max: maxArchive},
		chunks:  make(chan archiveChunk, archiveStreamDepth),
		free:    make(chan []byte, archiveStreamDepth+1),
		done:    make(chan struct{}),
	}
	stopCancel := context.AfterFunc(ctx, func() { s.hr.canceled.Store(true) })
	s.wg.Go(func() {
		defer stopCancel()
		defer close(s.chunks)
		s.pump(ctx)
	})
	return s
}

// pump is the goroutine's body: inflate chunk after chunk until the end of
// the gzip member or an error, and hand each chunk over.
func (s *archiveStream) pump(ctx context.Context) {
	br := bufio.NewReaderSize(s.hr, s.readBuf)
	gz, err := gzip.NewReader(br)
	if err != nil {
		s.send(ctx, archiveChunk{err: s.classify(err)})
		return
	}
	gz.Multistream(false)
	made := 0
	for {
		buf, ok := s.buffer(ctx, &made)
		if !ok {
			return
		}
		n, err := archiveFill(gz, buf)
		switch {
		case errors.Is(err, io.EOF):
			err = s.finish(gz, br)
		case err != nil:
			err = s.classify(err)
		}
		if !s.send(ctx, archiveChunk{buf: buf, n: n, err: err}) || err != nil {
			return
		}
	}
}

// buffer returns a free chunk buffer: one handed back, else a new one
// while fewer than archiveStreamDepth+1 were made (*made counts them; a
// small archive needs one), else the next one handed back. New buffers
// double in size from archiveMinBufSize up to archiveCopyBufSize, so a
// small machine's install allocates one small buffer. It returns false
// when the stream was stopped or ctx is done.
func (s *archiveStream) buffer(ctx context.Context, made *int) ([]byte, bool) {
	select {
	case buf := <-s.free:
		return buf, true
	default:
	}
	if *made < archiveStreamDepth+1 {
		size := min(archiveMinBufSize<<*made, archiveCopyBufSize)
		*made++
		return make([]byte, size), true
	}
	select {
	case buf := <-s.free:
		return buf, true
	case <-s.done:
		return nil, false
	case <-ctx.Done():
		s.send(ctx, archiveChunk{err: errArchiveCanceled})
		return nil, false
	}
}

// archiveFill reads from r until buf is full or r fails; unlike
// io.ReadFull it reports r's own error (io.EOF at the end).
func archiveFill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// finish checks the gzip trailer and that no byte follows the member; it
// returns io.EOF when the stream ended cleanly.
func (s *archiveStream) finish(gz *gzip.Reader, br *bufio.Reader) error {
	if err := gz.Close(); err != nil {
		return s.classify(err)
	}
	_, err := br.ReadByte()
	switch {
	case errors.Is(err, io.EOF):
		return io.EOF
	case err != nil:
		return s.classify(err)
	}
	return archiveErrorf(ErrInvalidArchive, "trailing data after the gzip stream")
}

// send hands c over unless the stream was stopped.
func (s *archiveStream) send(ctx context.Context, c archiveChunk) bool {
	select {
	case s.chunks <- c:
		return true
	case <-s.done:
		return false
	case <-ctx.Done():
		// The reader may be waiting: make sure it learns why.
		select {
		case s.chunks <- archiveChunk{err: errArchiveCanceled}:
		case <-s.done:
		}
		return false
	}
}

// classify turns an error of the gunzip side into the one to report: a
// cancellation and our own limits pass, a failed read of the source
// becomes an archiveReadError, anything else means a corrupt archive.
func (s *archiveStream) classify(err error) error {
	var kindErr *archiveKindError
	switch {
	case errors.Is(err, errArchiveCanceled), errors.As(err, &kindErr):
		return err
	case s.hr.readErr != nil:
		return &archiveReadError{err: s.hr.readErr}
	}
	return archiveErrorf(ErrInvalidArchive, "invalid archive: %w", err)
}

// Read serves decompressed bytes in order.
func (s *archiveStream) Read(p []byte) (int, error) {
	for s.off == s.cur.n {
		if s.cur.err != nil {
			return 0, s.cur.err
		}
		if s.cur.buf != nil {
			s.free <- s.cur.buf
		}
		c, ok := <-s.chunks
		if !ok {
			return 0, errArchiveCanceled
		}
		s.cur, s.off = c, 0
	}
	n := copy(p, s.cur.buf[s.off:s.cur.n])
	s.off += n
	return n, nil
}

// stop ends the goroutine and waits for it, so the source is no longer
// read once stop returns.
func (s *archiveStream) stop() {
	if !s.stopped {
		s.stopped = true
		close(s.done)
	}
	s.wg.Wait()
}

// archiveStreamError classifies an error the tar reader returned: errors
// of the gunzip side are already classified, anything else means a corrupt
// tar stream.
func archiveStreamError(err error) error {
	var kindErr *archiveKindError
	var readErr *archiveReadError
	if errors.Is(err, errArchiveCanceled) || errors.As(err, &kindErr) || errors.As(err, &readErr) {
		return err
	}
	return archiveErrorf(ErrInvalidArchive, "invalid archive: %w", err)
}

// archiveReadError is a failure to read the archive source (a network or
// disk error), as opposed to a bad archive.
type archiveReadError struct{ err error }

func (e *archiveReadError) Error() string { return "read archive: " + e.err.Error() }
func (e *archiveReadError) Unwrap() error { return e.err }

// errArchiveCanceled stands in for the context error inside the reader chain.
var errArchiveCanceled = errors.New("extraction canceled")

// archiveHashReader hashes and counts every byte read from r, caps the
// count, and fails once canceled is set.
type archiveHashReader struct {
	r        io.Reader
	h        hash.Hash
	n, max   int64
	readErr  error
	canceled atomic.Bool
}

func (hr *archiveHashReader) Read(p []byte) (int, error) {
	if hr.canceled.Load() {
		return 0, errArchiveCanceled
	}
	if hr.n >= hr.max {
		// Probe for one more byte: at the cap is fine, past it is not.
		var one [1]byte
		if n, _ := io.ReadFull(hr.r, one[:]); n > 0 {
			return 0, archiveErrorf(ErrArchiveTooLarge, "compressed archive exceeds %s", archiveFormatSize(hr.max))
		}
		return 0, io.EOF
	}
	if rest := hr.max - hr.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	hr.n += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		hr.readErr = err
	}
	return n, err
}
