// Package wer measures speech recognition: the word error rate of a
// transcript against what was said, as the voice tests report it
// (docs/VOICE.md).
package wer

import "strings"

// Count returns the Levenshtein distance in words (substitutions,
// insertions, deletions) between ref and hyp, and the number of words of
// ref. Words are compared in lower case, without punctuation.
func Count(ref, hyp string) (errs, words int) {
	r, h := Words(ref), Words(hyp)
	d := make([]int, len(h)+1)
	for j := range d {
		d[j] = j
	}
	for i := 1; i <= len(r); i++ {
		prev := d[0]
		d[0] = i
		for j := 1; j <= len(h); j++ {
			cost := 1
			if r[i-1] == h[j-1] {
				cost = 0
			}
			prev, d[j] = d[j], min(d[j]+1, d[j-1]+1, prev+cost)
		}
	}
	return d[len(h)], len(r)
}

// Words splits s into lower-case words of letters, digits and
// apostrophes.
func Words(s string) []string {
	return strings.Fields(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '\'' || r == ' ' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return ' '
	}, s))
}
