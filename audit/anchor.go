package audit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/uims/uims/schemas"
)

// An anchor (PROTOCOL.md §15.5) is what a broker records outside the
// stream, in its store, after JetStream acknowledged one of its batches:
// the boot's last batch stored, where and with which bytes. The stream
// and the store are separate trust domains (the NATS operator, the Redis
// operator): deleting a boot's last batches, or the whole stream, is seen
// by comparing the stream with the anchors, which the stream alone cannot
// show.

// AnchorSkew is the clock difference tolerated between a broker, which
// times its anchors, and the NATS server, which times the stream's
// messages that --since selects: an anchor recorded less than this after
// the start of a partial read, or less than this inside the retention, is
// not checked, since its batch may lie outside what was read.
const AnchorSkew = time.Minute

// Anchor is the last batch of one broker boot that the stream stored, as
// the broker recorded it in its store.
type Anchor struct {
	Broker    string `json:"broker"`
	Boot      string `json:"boot"`
	Seq       uint64 `json:"seq"`        // the batch's seq (its header's)
	StreamSeq uint64 `json:"stream_seq"` // the stream sequence JetStream acknowledged it with
	Digest    string `json:"digest"`     // hex SHA-256 of the batch's bytes (Hash)
	At        int64  `json:"at"`         // Unix ms the broker recorded the anchor
}

// AnchorOf returns the anchor of a batch the stream stored: its header,
// its bytes, the stream sequence of its acknowledgement, and now.
func AnchorOf(h *BatchHeader, data []byte, streamSeq uint64, now time.Time) Anchor {
	return Anchor{Broker: h.Broker, Boot: h.Boot, Seq: h.Seq, StreamSeq: streamSeq, Digest: Hash(data), At: now.UnixMilli()}
}

// Field is the anchor's field in the store, "<broker>/<boot>": one per
// boot, the key the verifier knows a boot's batches by.
func (a Anchor) Field() string { return a.Broker + "/" + a.Boot }

// Value is the anchor's value in the store,
// "<seq>|<stream seq>|<digest>|<at>", canonical decimal and lowercase hex:
// its first field is what the store compares to keep only a higher seq.
func (a Anchor) Value() string {
	return strconv.FormatUint(a.Seq, 10) + "|" + strconv.FormatUint(a.StreamSeq, 10) + "|" + a.Digest + "|" + strconv.FormatInt(a.At, 10)
}

// ParseAnchor parses one field and value of the store. It is strict (the
// brokers write canonical values only), so that a value edited by hand
// is not read as something else.
func ParseAnchor(field, value string) (Anchor, error) {
	var a Anchor
	i := strings.LastIndexByte(field, '/')
	if i <= 0 || !bootID(field[i+1:]) {
		return a, fmt.Errorf("%w: anchor field %q: want <broker>/<boot>", ErrFormat, field)
	}
	a.Broker, a.Boot = field[:i], field[i+1:]
	parts := strings.Split(value, "|")
	if len(parts) != 4 {
		return a, fmt.Errorf("%w: anchor %s: value %q: want seq|stream seq|digest|at", ErrFormat, field, value)
	}
	var err error
	if a.Seq, err = canonicalUint(parts[0]); err != nil || a.Seq < 1 {
		return a, fmt.Errorf("%w: anchor %s: seq %q", ErrFormat, field, parts[0])
	}
	if a.StreamSeq, err = canonicalUint(parts[1]); err != nil || a.StreamSeq < 1 {
		return a, fmt.Errorf("%w: anchor %s: stream seq %q", ErrFormat, field, parts[1])
	}
	if a.Digest = parts[2]; !schemas.LowerHex(a.Digest, 64) {
		return a, fmt.Errorf("%w: anchor %s: digest %q", ErrFormat, field, parts[2])
	}
	at, err := canonicalUint(parts[3])
	if err != nil || at > 1<<62 {
		return a, fmt.Errorf("%w: anchor %s: at %q", ErrFormat, field, parts[3])
	}
	a.At = int64(at)
	return a, nil
}

// ParseAnchors parses the store's anchors, by Field. The fields that do not
// parse are left out and reported together in the error (each wrapping
// ErrFormat): the others are still worth checking.
func ParseAnchors(fields map[string]string) (map[string]Anchor, error) {
	out := make(map[string]Anchor, len(fields))
	var errs []error
	for f, v := range fields {
		a, err := ParseAnchor(f, v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[f] = a
	}
	return out, errors.Join(errs...)
}

// bootID reports whether s is a boot id as publishers make them: lowercase
// hex, at most 64 digits.
func bootID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// canonicalUint parses a decimal without sign or leading zeros.
func canonicalUint(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if strconv.FormatUint(n, 10) != s {
		return 0, fmt.Errorf("%q is not canonical", s)
	}
	return n, nil
}
