package mailmsg

import (
	"bufio"
	"bytes"
	"io"
	"mime/multipart"
	"net/textproto"
	"strings"
	"testing"
)

// FuzzMultipartScanner checks that the multipart scanner splits bodies
// exactly as Go's mime/multipart does, which Extract relies on.
func FuzzMultipartScanner(f *testing.F) {
	f.Add([]byte("--b\r\n\r\nhi\r\n--b--\r\n"), "b")
	f.Add([]byte("preamble\n--b\nA: 1\n\nx\n--b\n\n--b--"), "b")
	f.Add([]byte("--b\r\n\r\n--b\r\n\r\nx\r\n--b--"), "b")
	f.Fuzz(func(t *testing.T, body []byte, boundary string) {
		if checkBoundary(boundary) != nil {
			return
		}
		var sizes []int
		mr := multipart.NewReader(bytes.NewReader(body), boundary)
		stdOK := true
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF { // mime/multipart wraps io.EOF in real errors
				break
			}
			if err != nil {
				stdOK = false
				break
			}
			n, err := io.Copy(io.Discard, p)
			if err != nil {
				stdOK = false
				break
			}
			sizes = append(sizes, int(n))
		}
		p := newParser(Limits{MaxParts: 1 << 20, MaxHeaders: 1 << 20, MaxHeaderBytes: 1 << 30})
		sc := newMultipartScanner(p, body, boundary)
		var mine []int
		myOK := true
		var myErr error
		for {
			h, b, ok, err := sc.next()
			if err != nil {
				myOK, myErr = false, err
				break
			}
			if !ok {
				break
			}
			// Header syntax is compared elsewhere (crossCheck); judge
			// it here as mime/multipart does, to compare splitting.
			tr := textproto.NewReader(bufio.NewReader(io.MultiReader(bytes.NewReader(h), strings.NewReader("\r\n"))))
			if _, err := tr.ReadMIMEHeader(); err != nil {
				myOK = false
				break
			}
			mine = append(mine, len(b))
		}
		if stdOK && !myOK && myErr != nil && strings.Contains(myErr.Error(), "not terminated by a blank line") {
			// mime/multipart reports a part header cut by EOF as a
			// clean end (io.EOF); the scanner calls it truncation.
			return
		}
		if stdOK && len(sizes) == 0 {
			return // Extract refuses part-less bodies
		}
		if myOK != stdOK {
			t.Fatalf("scanner ok=%v, mime/multipart ok=%v (%v vs %v)", myOK, stdOK, mine, sizes)
		}
		if myOK && len(mine) != len(sizes) {
			t.Fatalf("parts %v vs %v", mine, sizes)
		}
		for i := range mine {
			if myOK && mine[i] != sizes[i] {
				t.Fatalf("parts %v vs %v", mine, sizes)
			}
		}
	})
}
