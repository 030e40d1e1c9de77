package broker_test

import (
	"context"
	"strings"
	"testing"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/redistest"
	"github.com/uims/uims/schemas"
)

// Named groups are checked with the profile (schemas.ValidateGroups), in
// the profile file and in the store.
func TestProfileGroupsChecked(t *testing.T) {
	in, err := broker.ReadProfiles(strings.NewReader("clients:\n  - id: alice\n    groups: {team: [bob, \"+15550101\", \"xmpp:carol@chat.example\"]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if g := in[0].Groups["team"]; len(g) != 3 || g[2] != "xmpp:carol@chat.example" {
		t.Fatalf("groups %v", in[0].Groups)
	}
	for _, bad := range []string{"{Team: [bob]}", "{team: []}", "{team: [\"group:other\"]}", "{team: [\"\"]}"} {
		_, err := broker.ReadProfiles(strings.NewReader("clients:\n  - id: alice\n    groups: " + bad + "\n"))
		if err == nil || !strings.Contains(err.Error(), "group") {
			t.Errorf("%s: err %v", bad, err)
		}
	}
	_, rdb := redistest.Run(t)
	ps := broker.NewProfiles(rdb, nil)
	if err := ps.Put(context.Background(), &schemas.Profile{ID: "alice", Groups: map[string][]string{"team": {"group:x"}}}); err == nil {
		t.Fatal("Put stored a nested group")
	}
}

// A client's groups are its own: the answer to its credential query
// carries them, a lookup by id or address (any gateway resolving a
// recipient) does not.
func TestClientInfoGroupsOnlyForTheOwner(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(&schemas.Profile{ID: "alice", Token: "alice-token", Addresses: map[string]string{"web": "alice", "sms": "+15550100"},
		Groups: map[string][]string{"team": {"bob", "+15550101"}}})
	k, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "web", Medium: "web"})
	ctx := context.Background()
	ci, err := k.Client(ctx, schemas.ClientQuery{Kind: schemas.CredentialToken, Hash: schemas.TokenSHA256("alice-token")})
	if err != nil || len(ci.Groups["team"]) != 2 || ci.Groups["team"][1] != "+15550101" {
		t.Fatalf("by token: %+v, %v", ci, err)
	}
	for _, q := range []schemas.ClientQuery{{Kind: schemas.ClientByID, User: "alice"}, {Kind: schemas.ClientByAddress, Medium: "sms", User: "+15550100"}} {
		ci, err := k.Client(ctx, q)
		if err != nil || ci.ID != "alice" || ci.Groups != nil {
			t.Errorf("by %s: %+v, %v: want alice without groups", q.Kind, ci, err)
		}
	}
}
