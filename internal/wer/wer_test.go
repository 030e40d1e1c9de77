package wer_test

import (
	"testing"

	"github.com/uims/uims/internal/wer"
)

func TestCount(t *testing.T) {
	for _, c := range []struct {
		ref, hyp    string
		errs, words int
	}{{"the cat sat", "the cat sat", 0, 3}, {"the cat sat", "The cat, sat.", 0, 3}, {"the cat sat", "a cat sat down", 2, 3},
		{"the cat sat", "", 3, 3}, {"", "noise", 1, 0}, {"don't stop", "dont stop", 1, 2}} {
		if e, n := wer.Count(c.ref, c.hyp); e != c.errs || n != c.words {
			t.Errorf("Count(%q, %q) = %d, %d; want %d, %d", c.ref, c.hyp, e, n, c.errs, c.words)
		}
	}
}
