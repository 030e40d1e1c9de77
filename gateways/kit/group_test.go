package kit_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

func TestExpandAndNormaliseRecipients(t *testing.T) {
	ci := &schemas.ClientInfo{ID: "alice", Groups: map[string][]string{"team": {"bob", "carol"}, "bad": {"group:team"}}}
	got, err := kit.ExpandRecipients(ci, []string{" dave ", "group:team", "bob"})
	if err != nil || len(got) != 4 || got[0] != "dave" || got[1] != "bob" || got[2] != "carol" {
		t.Fatalf("%v %v", got, err)
	}
	norm, err := kit.NormaliseRecipients(got)
	if err != nil || len(norm) != 3 || norm[2] != "carol" {
		t.Fatalf("normalised %v %v", norm, err)
	}
	for _, c := range []struct {
		ci   *schemas.ClientInfo
		to   string
		code schemas.Code
	}{{ci, "group:nope", schemas.CodeUnknownRecipient}, {nil, "group:team", schemas.CodeUnknownRecipient},
		{&schemas.ClientInfo{ID: "bob"}, "group:team", schemas.CodeUnknownRecipient}, {ci, "group:bad", schemas.CodeMalformed}} {
		if _, err := kit.ExpandRecipients(c.ci, []string{"bob", c.to}); !kit.IsCode(err, c.code) {
			t.Errorf("%s: %v, want %s", c.to, err, c.code)
		}
	}
	many := make([]string, schemas.MaxGroupRecipients+1)
	for i := range many {
		many[i] = "+1555" + strconv.Itoa(1000+i)
	}
	if _, err := kit.NormaliseRecipients(many[:100]); err != nil {
		t.Fatal(err)
	}
	for name, to := range map[string][]string{"none": nil, "blank": {" "}, "101": many, "two lines": {"bob\ncarol"}, "group": {"group:x"}} {
		if _, err := kit.NormaliseRecipients(to); !kit.IsCode(err, schemas.CodeMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A group message is one transaction per recipient: each has its derived
// id, its outcome and the group in its meta; the group's status is the
// aggregate; a retry of the group delivers nothing twice.
func TestSendGroup(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(
		&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}, Prefer: []string{"web"}},
		&schemas.Profile{ID: "carol", Addresses: map[string]string{"web": "carol"}, Prefer: []string{"web"}},
	)
	og, dg := fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web"})
	ctx := context.Background()
	from := schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"}
	fabrictest.Eventually(t, 5*time.Second, "a route to bob", func() bool {
		_, err := ogKit.Send(ctx, &kit.Submission{From: from, To: "bob", Content: []byte("warm-up")})
		return err == nil
	})

	gid := kit.NewMsgID()
	s := &kit.Submission{MsgID: gid, From: from, Content: []byte("team meeting"), Meta: map[string]string{"x": "y"}}
	res, err := ogKit.SendGroup(ctx, s, []string{"bob", "nobody", " carol", "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != gid || len(res.Recipients) != 3 || res.Accepted() != 2 || res.Status != schemas.GroupPartial ||
		res.Counts[schemas.StatusDelivered] != 2 || res.Counts[schemas.StatusFailed] != 1 {
		t.Fatalf("result %+v", res)
	}
	for i, to := range []string{"bob", "nobody", "carol"} {
		r := res.Recipients[i]
		if r.To != to || r.ID != schemas.GroupMemberID(gid, to) {
			t.Errorf("recipient %d: %+v", i, r)
		}
	}
	if n := res.Recipients[1]; n.Status != schemas.StatusFailed || n.Code != "UNKNOWN_RECIPIENT" || n.Err == nil {
		t.Errorf("unknown recipient: %+v", n)
	}
	for _, i := range []int{0, 2} {
		id := res.Recipients[i].ID
		d := dg.Get(id)
		if d == nil || string(d.Content) != "team meeting" || d.Routed.IMI.Meta[schemas.MetaGroup] != gid || d.Routed.IMI.Meta["x"] != "y" {
			t.Fatalf("delivery of %s: %+v", id, d)
		}
	}
	if s.Meta[schemas.MetaGroup] != "" {
		t.Error("SendGroup changed the caller's meta")
	}
	st, err := ogKit.GroupStatus(ctx, gid)
	if err != nil || st.Status != schemas.GroupPartial || st.Sender != "alice" || len(st.Recipients) != 3 ||
		st.Recipients[1].Code != "UNKNOWN_RECIPIENT" || len(st.Recipients[0].History) == 0 {
		t.Fatalf("group status %+v, %v", st, err)
	}

	// The client retries: the same ids, nothing delivered twice.
	again, err := ogKit.SendGroup(ctx, &kit.Submission{MsgID: gid, From: from, Content: []byte("team meeting")}, []string{"bob", "nobody", "carol"})
	if err != nil || again.Accepted() != 2 || again.Recipients[0].ID != res.Recipients[0].ID {
		t.Fatalf("retry %+v, %v", again, err)
	}
	for _, i := range []int{0, 2} {
		if n := dg.Deliveries(res.Recipients[i].ID); n != 1 {
			t.Errorf("%s delivered %d times", res.Recipients[i].To, n)
		}
	}
	// The same id for other recipients, or for another sender: refused.
	if _, err := ogKit.SendGroup(ctx, &kit.Submission{MsgID: gid, From: from, Content: []byte("x")}, []string{"bob"}); !kit.IsCode(err, schemas.CodeDuplicate) {
		t.Errorf("other recipients: %v", err)
	}
	mallory := schemas.Endpoint{Medium: "test", Address: "mallory", Client: "mallory"}
	if _, err := ogKit.SendGroup(ctx, &kit.Submission{MsgID: gid, From: mallory, Content: []byte("x")}, []string{"bob", "nobody", "carol"}); !kit.IsCode(err, schemas.CodeDuplicate) {
		t.Errorf("another sender: %v", err)
	}
	if _, err := ogKit.GroupStatus(ctx, kit.NewMsgID()); !kit.IsCode(err, schemas.CodeUnknownTx) {
		t.Errorf("unknown group: %v", err)
	}
	if _, err := ogKit.SendGroup(ctx, &kit.Submission{From: from, Content: []byte("x")}, nil); !kit.IsCode(err, schemas.CodeMalformed) {
		t.Errorf("no recipients: %v", err)
	}
}
