package audit_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/audit"
)

// anchorOf is the anchor a broker records after the stream stored m.
func anchorOf(t *testing.T, m audit.Msg, at time.Time) audit.Anchor {
	t.Helper()
	b, err := audit.ParseBatch(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	return audit.AnchorOf(&b.Header, m.Data, m.Seq, at)
}

// runAnchored verifies msgs with anchors, as a whole-stream read unless
// since is set.
func runAnchored(since time.Time, anchors []audit.Anchor, msgs ...audit.Msg) *audit.Report {
	_, pub := key()
	v := &audit.Verifier{Keys: pub, Anchors: map[string]audit.Anchor{}, Partial: !since.IsZero(), Since: since}
	for _, a := range anchors {
		v.Anchors[a.Field()] = a
	}
	for _, m := range msgs {
		v.Add(m)
	}
	return v.Finish()
}

// The anchor's value is canonical: what parses is what the broker wrote,
// byte for byte.
func TestAnchorValue(t *testing.T) {
	a := audit.Anchor{Broker: "b/1", Boot: "0a1b2c3d4e5f", Seq: 17, StreamSeq: 4711, Digest: strings.Repeat("ab", 32), At: 1733400000000}
	if a.Field() != "b/1/0a1b2c3d4e5f" || a.Value() != "17|4711|"+a.Digest+"|1733400000000" {
		t.Fatalf("field %q value %q", a.Field(), a.Value())
	}
	back, err := audit.ParseAnchor(a.Field(), a.Value())
	if err != nil || back != a {
		t.Fatalf("%+v %v", back, err)
	}
	d := a.Digest
	for _, bad := range [][2]string{
		{"b1", "1|1|" + d + "|1"},                       // no boot
		{"/x", "1|1|" + d + "|1"},                       // no broker
		{"b1/X1", "1|1|" + d + "|1"},                    // boot not lowercase hex
		{"b1/x1", "0|1|" + d + "|1"},                    // seq 0
		{"b1/a1", "01|1|" + d + "|1"},                   // not canonical
		{"b1/a1", "+1|1|" + d + "|1"},                   // a sign
		{"b1/a1", "1|0|" + d + "|1"},                    // stream seq 0
		{"b1/a1", "1|1|" + strings.ToUpper(d) + "|1"},   // digest upper case
		{"b1/a1", "1|1|" + d[:63] + "|1"},               // digest short
		{"b1/a1", "1|1|" + d + "|-1"},                   // at negative
		{"b1/a1", "1|1|" + d},                           // three parts
		{"b1/a1", "1|1|" + d + "|1|x"},                  // five
		{"b1/a1", "18446744073709551616|1|" + d + "|1"}, // seq overflows
	} {
		if _, err := audit.ParseAnchor(bad[0], bad[1]); !errors.Is(err, audit.ErrFormat) {
			t.Errorf("%q = %q: %v", bad[0], bad[1], err)
		}
	}
	got, err := audit.ParseAnchors(map[string]string{a.Field(): a.Value(), "b2/ff": "x"})
	if len(got) != 1 || got[a.Field()] != a || !errors.Is(err, audit.ErrFormat) {
		t.Errorf("ParseAnchors: %v %v", got, err)
	}
}

// The anchor shows what the stream alone cannot: its last batches, or all
// of a boot's, deleted, and the anchored batch replaced by one signed with
// the brokers' key. Without anchors, the same stream verifies.
func TestVerifyAnchors(t *testing.T) {
	a, b := chainOf("a"), chainOf("b")
	msgs := []audit.Msg{batch(1, [][]byte{a[0], b[0]}), batch(2, [][]byte{a[1], a[2]}), batch(3, [][]byte{b[1], b[2]})}
	now := time.Now()
	anchor := anchorOf(t, msgs[2], now)
	if r := runAnchored(time.Time{}, []audit.Anchor{anchor}, msgs...); !r.OK() || r.AnchorsChecked != 1 {
		t.Fatalf("intact: %+v", r)
	}
	// the tail deleted: batch 3, without which both chains still close
	if r := run(false, msgs[:2]...); !r.OK() {
		t.Fatalf("the tail deleted, no anchor: %v", r.Findings)
	}
	if r := runAnchored(time.Time{}, []audit.Anchor{anchor}, msgs[:2]...); kinds(r) != audit.Missing || !strings.Contains(r.Findings[0].Detail, "batch 3 of b1 (boot x)") {
		t.Errorf("the tail deleted: %v", r.Findings)
	}
	// the whole stream
	if r := runAnchored(time.Time{}, []audit.Anchor{anchor}); kinds(r) != audit.Missing || !strings.Contains(r.Findings[0].Detail, "batches 1–3") {
		t.Errorf("the stream purged: %v", r.Findings)
	}
	// batch 3 re-signed without b's notify: a consistent chain, a valid
	// signature, but not the bytes stored
	forged := batch(3, [][]byte{b[1]})
	if r := run(false, msgs[0], msgs[1], forged); !r.OK() {
		t.Fatalf("forged, no anchor: %v", r.Findings)
	}
	if r := runAnchored(time.Time{}, []audit.Anchor{anchor}, msgs[0], msgs[1], forged); kinds(r) != audit.Altered || r.Findings[0].StreamSeq != 3 {
		t.Errorf("forged: %v", r.Findings)
	}
	// the forgery stored after the original: out of order, but the
	// anchored bytes are there
	if r := runAnchored(time.Time{}, []audit.Anchor{anchor}, append(msgs, forged)...); kinds(r) != audit.OutOfOrder+","+audit.OutOfOrder {
		t.Errorf("forged and original: %v", r.Findings)
	}
}

// A partial read checks the anchors recorded after it began, with the
// clocks' skew to spare, and a read at Now the anchors inside the
// retention.
func TestVerifyAnchorsRange(t *testing.T) {
	a := chainOf("a")
	msgs := []audit.Msg{batch(1, a[:1]), batch(2, a[1:2]), batch(3, a[2:])}
	now := time.Now()
	anchor := anchorOf(t, msgs[2], now)
	// read from 10 minutes ago: batch 3 must be there
	since := now.Add(-10 * time.Minute)
	if r := runAnchored(since, []audit.Anchor{anchor}, msgs[1]); kinds(r) != audit.Missing || r.AnchorsChecked != 1 {
		t.Errorf("partial, tail deleted: %+v", r)
	}
	if r := runAnchored(since, []audit.Anchor{anchor}, msgs[1:]...); !r.OK() {
		t.Errorf("partial, intact: %v", r.Findings)
	}
	// a partial read that starts after the anchored batch, in seq order
	later := anchorOf(t, msgs[0], now)
	if r := runAnchored(since, []audit.Anchor{later}, msgs[1:]...); kinds(r) != audit.Missing || !strings.Contains(r.Findings[0].Detail, "first read of this boot is 2") {
		t.Errorf("partial, the anchored batch before the first read: %v", r.Findings)
	}
	// read from after the anchor (or less than the skew before it): not checked
	for _, s := range []time.Time{now.Add(time.Second), now.Add(-audit.AnchorSkew / 2)} {
		if r := runAnchored(s, []audit.Anchor{anchor}); !r.OK() || r.AnchorsUnchecked != 1 || r.AnchorsChecked != 0 {
			t.Errorf("since %v: %+v", s, r)
		}
	}
	// past the retention: not checked
	_, pub := key()
	v := &audit.Verifier{Keys: pub, Now: now.Add(401 * 24 * time.Hour), Anchors: map[string]audit.Anchor{anchor.Field(): anchor}}
	if r := v.Finish(); !r.OK() || r.AnchorsUnchecked != 1 {
		t.Errorf("past the retention: %+v", r)
	}
	v = &audit.Verifier{Keys: pub, Now: now.Add(time.Hour), Retention: 2 * time.Hour, Anchors: map[string]audit.Anchor{anchor.Field(): anchor}}
	if r := v.Finish(); kinds(r) != audit.Missing {
		t.Errorf("inside a retention of 2 h: %+v", r)
	}
}

// FuzzAnchor: any field and value parse or fail with ErrFormat, and what
// parses is canonical: it prints back to the same field and value.
func FuzzAnchor(f *testing.F) {
	d := strings.Repeat("0f", 32)
	f.Add("b1/0a1b2c3d4e5f", "3|42|"+d+"|1733400000000")
	f.Add("b/1/ff", "1|1|"+d+"|0")
	f.Add("b1/ff", "01|1|"+d+"|0")
	f.Add("b1", "|||")
	f.Fuzz(func(t *testing.T, field, value string) {
		a, err := audit.ParseAnchor(field, value)
		if err != nil {
			if !errors.Is(err, audit.ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		if a.Field() != field || a.Value() != value {
			t.Fatalf("%q %q prints back as %q %q", field, value, a.Field(), a.Value())
		}
		if a.Seq < 1 || a.StreamSeq < 1 || a.At < 0 {
			t.Fatalf("%+v", a)
		}
	})
}
