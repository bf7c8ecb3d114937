package bench

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progress is the line on stderr that says what the bench is doing. On a
// terminal it is redrawn in place at most every progressEvery; elsewhere
// each step gets one line and counts are left out.
type progress struct {
	w        io.Writer
	terminal bool

	mu    sync.Mutex
	step  string
	last  time.Time
	shown bool
}

// progressEvery paces redraws of the progress line.
const progressEvery = 200 * time.Millisecond

func newProgress(w io.Writer, terminal bool) *progress {
	if w == nil {
		w = io.Discard
	}
	return &progress{w: w, terminal: terminal}
}

// stepf starts a step: what the bench does now.
func (p *progress) stepf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.step = fmt.Sprintf(format, args...)
	p.last = time.Time{}
	if !p.terminal {
		fmt.Fprintf(p.w, "mms bench: %s\n", p.step)
		return
	}
	p.draw(p.step)
}

// countf updates the current step with a count, such as agents started.
func (p *progress) countf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.terminal || time.Since(p.last) < progressEvery {
		return
	}
	p.last = time.Now()
	p.draw(p.step + ": " + fmt.Sprintf(format, args...))
}

// draw redraws the line; p.mu is held.
func (p *progress) draw(s string) {
	const width = 110
	if len(s) > width {
		s = s[:width-1] + "…"
	}
	fmt.Fprintf(p.w, "\r\033[Kmms bench: %s", s)
	p.shown = true
}

// done clears the line.
func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal && p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
