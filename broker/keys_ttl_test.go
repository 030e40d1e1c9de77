package broker_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// Every key a message leaves in Redis goes by itself: per-message and
// per-client keys carry a TTL, and only the brokers' few shared keys
// (sets and hashes that the sweeper and the accountant empty) have none,
// beside what was there before the first message (profiles, MIAP's epoch).
// A key per client without a TTL would grow with every client for ever
// (the all-time usage counters did, and nothing read them).
func TestMessagesLeaveNoKeyWithoutTTL(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	profiles(f)
	ctx := context.Background()
	before := keysWithoutTTL(t, f)
	ogKit, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "peer", Medium: "web"})
	waitRoute(t, ogKit)
	s := submission("keys")
	s.MsgID = kit.NewMsgID()
	if _, err := ogKit.Send(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	fabrictest.Eventually(t, 10*time.Second, "delivered and accounted", func() bool {
		st, err := ogKit.Query(ctx, s.MsgID)
		return err == nil && st.State == schemas.StatusDelivered && f.RDB.ZCard(ctx, "{uims}:acct").Val() == 0
	})
	shared := map[string]bool{}
	for _, k := range []string{"deadlines", "holds", "acct", "alive"} {
		shared["{uims}:"+k] = true
	}
	var without []string
	for k := range keysWithoutTTL(t, f) {
		if !shared[k] && !before[k] {
			without = append(without, k)
		}
	}
	sort.Strings(without)
	if len(without) > 0 {
		t.Errorf("keys without a TTL after a delivered message: %q", without)
	}
}

// keysWithoutTTL lists the keys in Redis that never expire.
func keysWithoutTTL(t *testing.T, f *fabrictest.Fabric) (set map[string]bool) {
	t.Helper()
	ctx := context.Background()
	set = map[string]bool{}
	iter := f.RDB.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		if ttl := f.RDB.PTTL(ctx, iter.Val()).Val(); ttl < 0 {
			set[iter.Val()] = true
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return set
}
