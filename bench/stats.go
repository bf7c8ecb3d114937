package bench

import (
	"slices"
	"time"
)

// percentile returns the p-th percentile of ds by nearest rank (p in
// 0..100); 0 for no samples. ds is not modified.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s) + 99) / 100
	return s[min(max(i, 1), len(s))-1]
}

// median is the 50th percentile.
func median(ds []time.Duration) time.Duration { return percentile(ds, 50) }

// maximum returns the largest of ds; 0 for none.
func maximum(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Max(ds)
}
