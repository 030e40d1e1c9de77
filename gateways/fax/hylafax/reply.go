// Package hylafax is a client for the HylaFAX client-server protocol that
// hfaxd serves (port 4559; hfaxd(8), "CLIENT-SERVER PROTOCOL"): an FTP-like
// protocol (RFC 959 replies and passive data connections) with job
// commands. It submits a TIFF document as a fax job (USER, TYPE I, FORM
// TIFF, PASV, STOT, JNEW, JPARM, JSUBM), reads a job's state (JOB,
// JPARM STATE/STATUS/...) and kills a job (JKILL).
package hylafax

import (
	"bufio"
	"errors"
	"fmt"
	"strings"
)

// ErrProtocol is a reply that breaks RFC 959 §4.2 syntax.
var ErrProtocol = errors.New("hylafax: protocol error")

// Limits of one reply: hfaxd's replies are a few lines.
const (
	maxReplyLines = 1000
	maxLine       = 4096
)

// Reply is one server reply (RFC 959 §4.2): a three-digit code and its
// text lines (the code and separator removed).
type Reply struct {
	Code  int
	Lines []string
}

// Text is the reply's lines joined by a space.
func (r *Reply) Text() string { return strings.Join(r.Lines, " ") }

// Class is the first digit of the code: 1 preliminary, 2 completion, 3
// intermediate, 4 transient failure, 5 permanent failure.
func (r *Reply) Class() int { return r.Code / 100 }

func (r *Reply) String() string { return fmt.Sprintf("%d %s", r.Code, r.Text()) }

// ReadReply reads one reply: either "ddd text" or a multi-line reply
// "ddd-text" ... "ddd text" (lines in between may have any form).
func ReadReply(br *bufio.Reader) (*Reply, error) {
	first, err := readLine(br)
	if err != nil {
		return nil, err
	}
	code, sep, text, err := splitLine(first)
	if err != nil {
		return nil, err
	}
	r := &Reply{Code: code, Lines: []string{text}}
	if sep == ' ' {
		return r, nil
	}
	for {
		if len(r.Lines) >= maxReplyLines {
			return nil, fmt.Errorf("%w: reply longer than %d lines", ErrProtocol, maxReplyLines)
		}
		l, err := readLine(br)
		if err != nil {
			return nil, err
		}
		if c, s, t, err := splitLine(l); err == nil && c == code && s == ' ' {
			r.Lines = append(r.Lines, t)
			return r, nil
		}
		r.Lines = append(r.Lines, l)
	}
}

// splitLine splits "ddd-text" or "ddd text".
func splitLine(l string) (code int, sep byte, text string, err error) {
	if len(l) < 3 {
		return 0, 0, "", fmt.Errorf("%w: short reply %q", ErrProtocol, l)
	}
	for i := 0; i < 3; i++ {
		if l[i] < '0' || l[i] > '9' {
			return 0, 0, "", fmt.Errorf("%w: reply without a code: %q", ErrProtocol, clip(l))
		}
	}
	code = int(l[0]-'0')*100 + int(l[1]-'0')*10 + int(l[2]-'0')
	if code < 100 || code > 599 {
		return 0, 0, "", fmt.Errorf("%w: reply code %d", ErrProtocol, code)
	}
	if len(l) == 3 {
		return code, ' ', "", nil
	}
	if l[3] != ' ' && l[3] != '-' {
		return 0, 0, "", fmt.Errorf("%w: reply code not followed by space or '-': %q", ErrProtocol, clip(l))
	}
	return code, l[3], l[4:], nil
}

// readLine reads a line ending in LF (CR dropped), at most maxLine bytes.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		frag, isPrefix, err := br.ReadLine()
		if err != nil {
			return "", fmt.Errorf("hylafax: read reply: %w", err)
		}
		b = append(b, frag...)
		if len(b) > maxLine {
			return "", fmt.Errorf("%w: reply line longer than %d bytes", ErrProtocol, maxLine)
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// fileOf finds the server's file name in a STOT reply, "FILE: /tmp/doc3.tif"
// (hfaxd: "150 FILE: /tmp/doc3.tif (Opening new data connection)." and
// "226 Transfer complete (FILE: /tmp/doc3.tif).").
func fileOf(text string) (string, bool) {
	i := strings.Index(text, "FILE: ")
	if i < 0 {
		return "", false
	}
	f := text[i+6:]
	if j := strings.IndexAny(f, " )"); j >= 0 {
		f = f[:j]
	}
	f = strings.TrimSuffix(f, ".")
	return f, f != "" && !strings.ContainsAny(f, "\r\n\t")
}

// jobOf finds the job id in a JNEW reply, "New job created: jobid: 2
// groupid: 2.".
func jobOf(text string) (string, bool) {
	i := strings.Index(text, "jobid: ")
	if i < 0 {
		return "", false
	}
	f := text[i+7:]
	j := 0
	for j < len(f) && f[j] >= '0' && f[j] <= '9' {
		j++
	}
	return f[:j], j > 0 && j <= 10
}

// pasvAddr reads "227 Entering passive mode (h1,h2,h3,h4,p1,p2)".
func pasvAddr(text string) (string, error) {
	i := strings.IndexByte(text, '(')
	j := strings.IndexByte(text, ')')
	if i < 0 || j < i {
		return "", fmt.Errorf("%w: PASV reply without address: %q", ErrProtocol, clip(text))
	}
	var n [6]int
	parts := strings.Split(text[i+1:j], ",")
	if len(parts) != 6 {
		return "", fmt.Errorf("%w: PASV address %q", ErrProtocol, clip(text))
	}
	for k, p := range parts {
		v := 0
		p = strings.TrimSpace(p)
		if p == "" || len(p) > 3 {
			return "", fmt.Errorf("%w: PASV address %q", ErrProtocol, clip(text))
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return "", fmt.Errorf("%w: PASV address %q", ErrProtocol, clip(text))
			}
			v = v*10 + int(c-'0')
		}
		if v > 255 {
			return "", fmt.Errorf("%w: PASV address %q", ErrProtocol, clip(text))
		}
		n[k] = v
	}
	return fmt.Sprintf("%d.%d.%d.%d:%d", n[0], n[1], n[2], n[3], n[4]*256+n[5]), nil
}
