package schemas_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/uims/uims/schemas"
)

// TestGroupMemberID pins the derivation of PROTOCOL.md §6.3 "Group
// messages" (values computed with Python's hashlib, independently).
func TestGroupMemberID(t *testing.T) {
	gid := "0123456789abcdef0123456789abcdef"
	for to, want := range map[string]string{
		"+15550101": "cdfe7c15a788bba032d7f5e5fc6d7e24",
		"bob":       "75ccf459303e9ead9ab99d04b01013b9",
	} {
		if got := schemas.GroupMemberID(gid, to); got != want || !schemas.ValidMsgID(got) {
			t.Errorf("GroupMemberID(%s, %q) = %s, want %s", gid, to, got, want)
		}
	}
	// The separator keeps (id, recipient) pairs apart.
	if schemas.GroupMemberID(gid, "bob") == schemas.GroupMemberID(gid+"b", "ob") {
		t.Error("ambiguous derivation")
	}
}

func TestValidGroupName(t *testing.T) {
	for _, ok := range []string{"team", "a", "0", "ops.night-shift_2", strings.Repeat("a", 64)} {
		if !schemas.ValidGroupName(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "Team", ".team", "-team", "_t", "te am", "team:", "é", strings.Repeat("a", 65)} {
		if schemas.ValidGroupName(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestValidateGroups(t *testing.T) {
	many := make([]string, schemas.MaxGroupRecipients+1)
	for i := range many {
		many[i] = "+1555" + strconv.Itoa(1000+i)
	}
	tooMany := map[string][]string{}
	for i := 0; i <= schemas.MaxGroups; i++ {
		tooMany["g"+strconv.Itoa(i)] = []string{"bob"}
	}
	if err := schemas.ValidateGroups(map[string][]string{"team": {"bob", "+15550101", "mailto:carol@example.com"}, "x": many[:100]}); err != nil {
		t.Fatal(err)
	}
	for name, g := range map[string]map[string][]string{
		"bad name":      {"Team": {"bob"}},
		"empty":         {"team": {}},
		"101 members":   {"team": many},
		"empty member":  {"team": {""}},
		"spaced member": {"team": {" bob"}},
		"two lines":     {"team": {"bob\ncarol"}},
		"nested":        {"team": {"group:other"}},
		"101 groups":    tooMany,
	} {
		err := schemas.ValidateGroups(g)
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		// The JSON Schema refuses the same profiles.
		doc, _ := json.Marshal(schemas.Profile{V: 1, ID: "alice", Groups: g})
		if verr := validate(compile(t, "profile"), doc); verr == nil {
			t.Errorf("%s: profile.schema.json accepts it", name)
		}
	}
	doc, _ := json.Marshal(schemas.ClientInfo{V: 1, ID: "alice", Groups: map[string][]string{"team": {"bob"}}})
	if err := validate(compile(t, "client-info"), doc); err != nil {
		t.Fatal(err)
	}
}

func TestGroupAggregate(t *testing.T) {
	d, r, f, tr := schemas.StatusDelivered, schemas.StatusRead, schemas.StatusFailed, schemas.StatusTransferred
	for _, c := range []struct {
		states []string
		want   string
	}{
		{[]string{d, r, d}, schemas.GroupDelivered},
		{[]string{f, f}, schemas.GroupFailed},
		{[]string{d, f, r}, schemas.GroupPartial},
		{[]string{d, f, tr}, schemas.GroupPending},
		{[]string{f, "routed"}, schemas.GroupPending},
		{nil, schemas.GroupPending},
	} {
		if got := schemas.GroupAggregate(c.states); got != c.want {
			t.Errorf("%v: %s, want %s", c.states, got, c.want)
		}
	}
}
