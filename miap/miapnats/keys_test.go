package miapnats_test

import (
	"crypto/rand"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
)

// FuzzDecodeKeyEntries: a key registry entry is read by every broker; the
// decoder never panics, accepts only entries of the named party that make
// a keyring, and what it accepts re-encodes to the same entries.
func FuzzDecodeKeyEntries(f *testing.F) {
	e, _ := miap.NewKeyEntry(rand.Reader, "web", "web-1", time.Time{})
	e.Role, e.Media = miap.RoleGateway, []string{"web"}
	g, _ := miap.NewKeyEntry(rand.Reader, "web", "web-2", time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC))
	for _, es := range [][]miap.KeyEntry{{e}, {e, g}} {
		b, _ := json.Marshal(es)
		f.Add("web", b)
	}
	b, _ := json.Marshal([]miap.KeyEntry{e})
	f.Add("email", b)
	f.Add("web", []byte(`[]`))
	f.Add("web", []byte(`[{"party":"web","kid":"k","secret":"c2hvcnQ="}]`))
	f.Add("web", []byte(`{"party":"web"}`))
	f.Fuzz(func(t *testing.T, party string, b []byte) {
		es, err := miapnats.DecodeKeyEntries(party, b)
		if err != nil {
			return
		}
		for _, e := range es {
			if e.Party != party {
				t.Fatalf("accepted a key of %q in the entry of %q", e.Party, party)
			}
		}
		kr, err := miap.NewKeyring(es)
		if err != nil || !kr.Has(party) {
			t.Fatalf("accepted entries that make no keyring: %v", err)
		}
		again, _ := json.Marshal(es)
		es2, err := miapnats.DecodeKeyEntries(party, again)
		if err != nil || !reflect.DeepEqual(es, es2) {
			t.Fatalf("re-encoding changes the entries: %v", err)
		}
	})
}
