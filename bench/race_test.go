//go:build race

package bench

// raceEnabled says the race detector is on: it shadows every write to the
// heap, so page fault counts say nothing about the heap's own pages.
const raceEnabled = true
