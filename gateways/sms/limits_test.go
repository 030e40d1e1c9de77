package sms_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/uims/uims/gateways/kit/authlimit"
	"github.com/uims/uims/gateways/sms"
	"github.com/uims/uims/gateways/sms/pdu"
)

// bindFrom binds once on a fresh connection from local and closes it.
func bindFrom(t *testing.T, addr string, local net.IP, user, pass string) pdu.Status {
	t.Helper()
	c := dialESMEFrom(t, addr, local)
	defer c.conn.Close()
	return c.bind(pdu.CmdBindTransceiver, user, pass)
}

// TestBindLockout: failed binds lock out the system_id (3 here), and, with
// distinct system_ids, the address (8 here, from 127.0.0.2). While locked
// out, every bind, the right password too, is ESME_RBINDFAIL without a
// query to the brokers (the store does not grow); other accounts and
// addresses still bind, and the account binds again once its lockout ends.
func TestBindLockout(t *testing.T) {
	const lockout = 3 * time.Second
	e := newEnv(t, sms.Config{
		BindPerID:   authlimit.Policy{Failures: 3, Window: time.Minute, Lockout: lockout},
		BindPerAddr: authlimit.Policy{Failures: 8, Window: time.Minute, Lockout: time.Minute},
		BindDelay:   10 * time.Millisecond,
	})
	ctx := context.Background()
	here, there := net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)

	// Per system_id.
	for i := range 3 {
		if st := bindFrom(t, e.addr(), here, "alice", "wrong"); st != pdu.ESME_RBINDFAIL {
			t.Fatalf("wrong password %d: %s", i+1, st)
		}
	}
	lockedAt := time.Now()
	keys := e.f.RDB.DBSize(ctx).Val()
	for range 5 {
		if st := bindFrom(t, e.addr(), here, "alice", "wrong"); st != pdu.ESME_RBINDFAIL {
			t.Fatalf("locked out, wrong password: %s", st)
		}
	}
	if st := bindFrom(t, e.addr(), here, "alice", "alice-pw"); st != pdu.ESME_RBINDFAIL {
		t.Fatalf("locked out, right password: %s, want ESME_RBINDFAIL", st)
	}
	if got := e.f.RDB.DBSize(ctx).Val(); got != keys {
		t.Fatalf("store keys %d → %d for binds refused during the lockout", keys, got)
	}
	if st := bindFrom(t, e.addr(), here, "carol", "carol-pw"); st != pdu.ESME_ROK {
		t.Fatalf("another account from the same address: %s", st)
	}
	if time.Since(lockedAt) > lockout-500*time.Millisecond {
		t.Fatalf("test too slow for the %v lockout", lockout)
	}

	// Per address: distinct system_ids, one failure each.
	for i := range 8 {
		if st := bindFrom(t, e.addr(), there, fmt.Sprintf("guess%d", i), "wrong"); st != pdu.ESME_RBINDFAIL {
			t.Fatalf("guess %d: %s", i, st)
		}
	}
	if st := bindFrom(t, e.addr(), there, "carol", "carol-pw"); st != pdu.ESME_RBINDFAIL {
		t.Fatalf("locked-out address, right password: %s, want ESME_RBINDFAIL", st)
	}
	if st := bindFrom(t, e.addr(), here, "carol", "carol-pw"); st != pdu.ESME_ROK {
		t.Fatalf("another address: %s", st)
	}

	st := e.gw.BindStats()
	if st.Failed != 11 || st.Lockouts != 2 || st.LockedOut != 7 {
		t.Fatalf("bind stats %+v, want 11 failed, 2 lockouts, 7 refused while locked out", st)
	}

	// The system_id's lockout ends.
	time.Sleep(time.Until(lockedAt.Add(lockout)))
	if st := bindFrom(t, e.addr(), here, "alice", "alice-pw"); st != pdu.ESME_ROK {
		t.Fatalf("after the lockout: %s", st)
	}
}
