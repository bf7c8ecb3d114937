// Package suggest finds the known word a typo most likely meant, for "did
// you mean" hints in error messages (unknown fields, watcher types, matcher
// functions).
package suggest

import "strings"

// Closest returns the candidate nearest to word, or "" when none is close
// enough to be a likely typo: at most one edit for words of up to four
// characters, two for longer ones (edits are insertions, deletions,
// substitutions and swaps of neighbours, case ignored).
func Closest(word string, candidates []string) string {
	limit := 1
	if len(word) > 4 {
		limit = 2
	}
	best, bestDist := "", limit+1
	w := strings.ToLower(word)
	for _, c := range candidates {
		if d := distance(w, strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// Hint returns `; did you mean "x"?` for the closest candidate, or "".
func Hint(word string, candidates []string) string {
	if c := Closest(word, candidates); c != "" && c != word {
		return `; did you mean "` + c + `"?`
	}
	return ""
}

// distance is the optimal string alignment distance between a and b
// (Levenshtein plus transpositions of neighbours), in bytes.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		if a == b {
			return 0
		}
		return 1 << 30 // not worth comparing: no suggestion
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
