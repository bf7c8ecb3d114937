package schedulewatcher

import (
	"time"

	"github.com/robfig/cron/v3"
)

// evaluate looks at the windows around t. until is when the
// latest-closing window open at t closes, the zero time when none is open
// (the switch is off). next is the earliest time after t at which the
// switch may change, no later than MaxRecheck after t. Its cost does not
// grow with the duration: it visits only the fires within start_splay of t.
func (w *Watcher) evaluate(t time.Time) (until, next time.Time) {
	next = t.Add(MaxRecheck)
	earlier := func(c time.Time) {
		if c.Before(next) {
			next = c
		}
	}
	later := func(c time.Time) {
		if c.After(until) {
			until = c
		}
	}
	for _, s := range w.specs {
		// No window closes before that of the first fire after
		// t-duration, and none opens before the first fire after t.
		if f := s.Next(t.Add(-w.duration)); !f.IsZero() && !f.After(t) {
			earlier(f.Add(w.duration))
		}
		if f := s.Next(t); !f.IsZero() {
			earlier(f)
		}
		// The windows of fires in (t-duration, t-splay] are open; the
		// latest of them closes last.
		if f := lastFire(s, t.Add(-w.duration), t.Add(-w.splay)); !f.IsZero() {
			later(f.Add(w.duration))
		}
		// Fires in (t-splay, t] open after their own delay.
		if w.splay == 0 {
			continue
		}
		for f := s.Next(t.Add(-w.splay)); !f.IsZero() && !f.After(t); f = s.Next(f) {
			if open := f.Add(w.splayFor(f)); open.After(t) {
				earlier(open)
			} else {
				later(f.Add(w.duration))
			}
		}
	}
	return until, next
}

// lastFire returns the latest fire of s in (lo, hi], or the zero time when
// there is none. It bisects over whole seconds (cron's resolution), so it
// costs about log2(hi-lo in seconds) calls of Next.
func lastFire(s *cron.SpecSchedule, lo, hi time.Time) time.Time {
	first := s.Next(lo)
	if first.IsZero() || first.After(hi) {
		return time.Time{}
	}
	// after(n) holds for the second n when no fire follows it up to hi;
	// it is monotonic, false just before first and true at hi.
	after := func(n int64) bool {
		f := s.Next(time.Unix(n, 0).In(hi.Location()))
		return f.IsZero() || f.After(hi)
	}
	a, b := first.Unix(), hi.Unix() // after(b) holds; find the smallest such n
	for a < b {
		m := a + (b-a)/2
		if after(m) {
			b = m
		} else {
			a = m + 1
		}
	}
	// a is a fire: the one before it is at most hi, the one after beyond.
	return time.Unix(a, 0).In(hi.Location())
}

// offBetween reports whether the switch is off at some instant in [a, b].
func (w *Watcher) offBetween(a, b time.Time) bool {
	for t := a; !t.After(b); {
		until, _ := w.evaluate(t)
		if until.IsZero() {
			return true
		}
		t = until
	}
	return false
}

// splayFor is the opening delay of the window of the fire at f.
func (w *Watcher) splayFor(f time.Time) time.Duration {
	if w.splay <= 0 {
		return 0
	}
	return time.Duration(mix(w.seed^uint64(f.Unix())) % uint64(w.splay))
}

// mix is the splitmix64 finalizer: a cheap, well-spread hash of x.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
