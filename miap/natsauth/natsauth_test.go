package natsauth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/internal/natstest"
	"github.com/uims/uims/miap/natsauth"
	"github.com/uims/uims/schemas"
)

func TestAnonymousRefused(t *testing.T) {
	a, err := natsauth.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ns := natstest.RunAuth(t, a)
	_, err = nats.Connect(ns.ClientURL(), nats.MaxReconnects(0))
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("anonymous connection: err = %v, want an authorization violation", err)
	}
	_, err = nats.Connect(ns.ClientURL(), nats.UserInfo("web", "web"), nats.MaxReconnects(0))
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("user/password connection: err = %v, want an authorization violation", err)
	}
}

// op is one thing a party tries on the fabric.
type op struct {
	kind    string // sub, queue, pub
	subject string
}

type party struct {
	name  string
	role  natsauth.Role
	media []string
}

var (
	web      = party{"web", natsauth.RoleGateway, []string{"web"}}
	email    = party{"email", natsauth.RoleGateway, []string{"email"}}
	fax      = party{"fax", natsauth.RoleGateway, []string{"fax"}}
	voice    = party{"voice", natsauth.RoleGateway, []string{"voice"}}
	voice2   = party{"voice2", natsauth.RoleGateway, []string{"voice"}}
	bot      = party{"mybot", natsauth.RoleGateway, []string{"bot"}}
	proc     = party{"proc", natsauth.RoleProcessor, nil}
	brk      = party{"broker", natsauth.RoleBroker, nil}
	cli      = party{"cli", natsauth.RoleClient, []string{"cli"}}
	observer = party{"ops", natsauth.RoleObserver, nil}
)

// TestPermissionMatrix tries, as each role, what the role needs (allowed)
// and what an attacker on the fabric would do (denied): a denied subscribe
// or publish must come back as a permissions violation, never be silent.
func TestPermissionMatrix(t *testing.T) {
	a, err := natsauth.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ns := natstest.RunAuth(t, a)
	cases := []struct {
		who   party
		op    op
		allow bool
	}{
		// the fax gateway keeps its outgoing faxes and HylaFAX jobs in uims_fax
		{fax, op{"pub", "$KV.uims_fax.fax.out.m1"}, true},
		{fax, op{"pub", "$JS.API.STREAM.CREATE.KV_uims_fax"}, true},
		{fax, op{"queue", "uims.gw.fax.im"}, true},
		{fax, op{"pub", "$KV.uims_mail.fax.out.m1"}, false},
		{fax, op{"queue", "uims.gw.email.im"}, false},
		{web, op{"pub", "$KV.uims_fax.fax.out.m1"}, false},
		{email, op{"pub", "$JS.API.STREAM.CREATE.KV_uims_fax"}, false},
		// a voice gateway keeps its calls out and their audio in buckets
		// of its own, and purges its own audio; another voice party
		// cannot read or purge them
		{voice, op{"pub", "$KV.uims_voice_voice.out.m1"}, true},
		{voice, op{"pub", "$JS.API.STREAM.CREATE.OBJ_uims_voice_voice"}, true},
		{voice, op{"pub", "$JS.API.STREAM.PURGE.OBJ_uims_voice_voice"}, true},
		{voice2, op{"pub", "$KV.uims_voice_voice.out.m1"}, false},
		{voice2, op{"pub", "$JS.API.STREAM.PURGE.OBJ_uims_voice_voice"}, false},
		{voice2, op{"pub", "$JS.API.DIRECT.GET.KV_uims_voice_voice.$KV.uims_voice_voice.out.m1"}, false},
		{voice, op{"pub", "$JS.API.STREAM.PURGE.KV_uims_voice_voice"}, false},
		// a gateway serves its own subjects, reaches the brokers, hands transfers on
		{web, op{"queue", "uims.gw.web.im"}, true},
		{web, op{"pub", "uims.broker.imi"}, true},
		{web, op{"pub", "uims.broker.ack"}, true},
		{web, op{"pub", "uims.broker.cancel"}, true}, // its own held messages (PROTOCOL.md §6.16)
		{web, op{"sub", "uims.broker.cancel"}, false},
		{web, op{"pub", "uims.gw.email.im"}, true},
		{web, op{"pub", "uims.proc.html2text"}, true},
		{web, op{"pub", "uims.trace.web.batch"}, true},
		{web, op{"pub", "uims.inbox.0.bob.m1"}, true},
		{web, op{"sub", "_INBOX.web.x"}, true},
		// ... and nothing else
		{web, op{"sub", "uims.>"}, false},
		{web, op{"sub", "uims.gw.*.im"}, false},
		{web, op{"sub", "uims.broker.imi"}, false},
		{web, op{"sub", "uims.broker.client"}, false},
		{web, op{"sub", "uims.trace.>"}, false},
		{web, op{"sub", "_INBOX.>"}, false},
		{web, op{"sub", "_INBOX.email.x"}, false},
		{web, op{"pub", "uims.gw.email.status"}, false},
		{web, op{"pub", "uims.trace.email.batch"}, false},
		{web, op{"pub", "uims.broker.conv"}, false},
		{web, op{"pub", "uims.broker.profile"}, false},
		{web, op{"pub", "$KV.uims_miap.epoch"}, false},
		{web, op{"pub", "uims.acks.email"}, false},
		{web, op{"pub", "$JS.API.STREAM.PURGE.UIMS_INBOX_0"}, false},
		{web, op{"pub", "$JS.API.STREAM.DELETE.UIMS_INBOX_0"}, false},
		{web, op{"pub", "$JS.API.CONSUMER.CREATE.UIMS_STATUS.status-email.uims.gw.email.status"}, false},
		{web, op{"pub", "$JS.API.CONSUMER.MSG.NEXT.UIMS_STATUS.status-email"}, false},
		{web, op{"pub", "$JS.API.DIRECT.GET.KV_uims_keys.$KV.uims_keys.broker"}, false},
		// another gateway may not touch the web inboxes or join the web queue
		{email, op{"queue", "uims.gw.web.im"}, false},
		{email, op{"sub", "uims.inbox.>"}, false},
		{email, op{"pub", "uims.inbox.0.bob.m1"}, false},
		{email, op{"pub", "uims.read.0.bob.m1"}, false},
		{email, op{"pub", "$JS.API.STREAM.PURGE.UIMS_INBOX_0"}, false},
		{email, op{"pub", "$JS.API.CONSUMER.CREATE.UIMS_INBOX_0.x"}, false},
		{email, op{"pub", "$KV.uims_keys.email"}, false},
		// a new gateway: the kit's subjects and streams, its own key entry
		{bot, op{"queue", "uims.gw.mybot.im"}, true},
		{bot, op{"pub", "uims.broker.imi"}, true},
		{bot, op{"pub", "uims.gw.web.im"}, true},
		{bot, op{"pub", "uims.acks.mybot"}, true},
		{bot, op{"pub", "$JS.API.CONSUMER.CREATE.UIMS_STATUS.status-mybot.uims.gw.mybot.status"}, true},
		{bot, op{"pub", "$JS.API.DIRECT.GET.KV_uims_keys.$KV.uims_keys.mybot"}, true},
		// its own micro service's discovery, and no other's: a gateway that
		// answered $SRV.PING.uims-broker would pass for a broker instance
		{bot, op{"sub", "$SRV.PING"}, true},
		{bot, op{"sub", "$SRV.STATS.uims-gw-mybot"}, true},
		{bot, op{"sub", "$SRV.INFO.uims-gw-mybot.abc123"}, true},
		{bot, op{"sub", "$SRV.PING.uims-broker"}, false},
		{bot, op{"sub", "$SRV.STATS.uims-gw-web"}, false},
		{bot, op{"sub", "$SRV.>"}, false},
		{bot, op{"sub", "uims.gw.web.>"}, false},
		{bot, op{"pub", "uims.web.events.bob"}, false},
		{bot, op{"sub", "uims.web.events.bob"}, false},
		{bot, op{"pub", "$JS.API.STREAM.DELETE.UIMS_STATUS"}, false},
		{bot, op{"pub", "$JS.API.STREAM.UPDATE.UIMS_ACKS"}, false},
		{bot, op{"pub", "$JS.API.CONSUMER.CREATE.OBJ_uims_content.x.$O.uims_content.M.>"}, false},
		// the content a gateway keeps for a reroute (PROTOCOL.md §6.15) is
		// its own: it writes, reads, deletes; another gateway none of it
		{web, op{"pub", "$KV.uims_og_web.0123456789abcdef0123456789abcdef"}, true},
		{web, op{"pub", "$JS.API.STREAM.CREATE.KV_uims_og_web"}, true},
		{web, op{"pub", "$JS.API.DIRECT.GET.KV_uims_og_web.$KV.uims_og_web.0123456789abcdef0123456789abcdef"}, true},
		{email, op{"pub", "$KV.uims_og_web.0123456789abcdef0123456789abcdef"}, false},
		{email, op{"pub", "$JS.API.DIRECT.GET.KV_uims_og_web.$KV.uims_og_web.0123456789abcdef0123456789abcdef"}, false},
		{email, op{"pub", "$JS.API.STREAM.MSG.GET.KV_uims_og_web"}, false},
		{email, op{"pub", "$JS.API.CONSUMER.CREATE.KV_uims_og_web.x.$KV.uims_og_web.>"}, false},
		{web, op{"pub", "$JS.API.STREAM.PURGE.KV_uims_og_web"}, false},
		{web, op{"pub", "$O.uims_og_web.C.abc"}, true},
		{web, op{"pub", "$JS.API.STREAM.CREATE.OBJ_uims_og_web"}, true},
		{web, op{"pub", "$JS.API.CONSUMER.CREATE.OBJ_uims_og_web.x.$O.uims_og_web.C.abc"}, true},
		{web, op{"pub", "$JS.API.DIRECT.GET.OBJ_uims_og_web.$O.uims_og_web.M.bWVzc2FnZQ=="}, true},
		{web, op{"pub", "$JS.API.STREAM.PURGE.OBJ_uims_og_web"}, true},
		{web, op{"pub", "$JS.API.STREAM.DELETE.OBJ_uims_og_web"}, false},
		{web, op{"pub", "$JS.API.STREAM.PURGE.OBJ_uims_og_email"}, false},
		{email, op{"pub", "$O.uims_og_web.C.abc"}, false},
		{email, op{"pub", "$O.uims_og_web.M.bWVzc2FnZQ=="}, false},
		{email, op{"pub", "$JS.API.STREAM.INFO.OBJ_uims_og_web"}, false},
		{email, op{"pub", "$JS.API.CONSUMER.CREATE.OBJ_uims_og_web.x.$O.uims_og_web.C.abc"}, false},
		{email, op{"pub", "$JS.API.DIRECT.GET.OBJ_uims_og_web.$O.uims_og_web.M.bWVzc2FnZQ=="}, false},
		{email, op{"pub", "$JS.API.STREAM.MSG.GET.OBJ_uims_og_web"}, false},
		{email, op{"pub", "$JS.API.STREAM.PURGE.OBJ_uims_og_web"}, false},
		{bot, op{"pub", "$O.uims_og_mybot.C.abc"}, true},
		{bot, op{"pub", "$O.uims_og_web.C.abc"}, false},
		// processors
		{proc, op{"queue", "uims.proc.html2text"}, true},
		{proc, op{"pub", "$O.uims_og_web.C.abc"}, false},
		{proc, op{"pub", "uims.broker.conv"}, true},
		{proc, op{"pub", "uims.gw.web.im"}, true},
		{proc, op{"sub", "uims.gw.web.im"}, false},
		{proc, op{"pub", "uims.inbox.0.bob.m1"}, false},
		// brokers
		{brk, op{"queue", "uims.broker.imi"}, true},
		{brk, op{"pub", "uims.gw.web.status"}, true},
		{brk, op{"pub", "uims.gw.web.held"}, true},
		{web, op{"queue", "uims.gw.web.held"}, true},
		{web, op{"pub", "uims.gw.email.held"}, false},
		{email, op{"sub", "uims.gw.web.held"}, false},
		{brk, op{"pub", "$JS.API.CONSUMER.CREATE.KV_uims_keys.w"}, true},
		{brk, op{"sub", "uims.gw.web.im"}, false},
		// content by reference: the brokers delete objects, never read chunks;
		// a gateway may neither purge nor read the chunks as a consumer of all
		{brk, op{"pub", "$JS.API.STREAM.PURGE.OBJ_uims_content"}, true},
		{brk, op{"pub", "$JS.API.DIRECT.GET.OBJ_uims_content.$O.uims_content.M.abc"}, true},
		{brk, op{"pub", "$JS.API.CONSUMER.CREATE.OBJ_uims_content.x.$O.uims_content.C.nuid"}, false},
		{brk, op{"pub", "$JS.API.STREAM.MSG.GET.OBJ_uims_content"}, false},
		{web, op{"pub", "$JS.API.STREAM.PURGE.OBJ_uims_content"}, false},
		{brk, op{"pub", "uims.gw.web.im"}, true}, // its own messages (a quota warning, PROTOCOL.md §6.17)
		{brk, op{"pub", "uims.gw.web.login"}, true},
		{brk, op{"queue", "uims.gw.web.login"}, false},
		{brk, op{"sub", "uims.proc.html2text"}, false},
		{brk, op{"pub", "uims.inbox.0.bob.m1"}, false},
		{brk, op{"pub", "$KV.uims_keys.web"}, false},
		{brk, op{"pub", "uims.broker.profile"}, false},
		{party{"admin", natsauth.RoleAdmin, nil}, op{"pub", "uims.broker.profile"}, true},
		{party{"admin", natsauth.RoleAdmin, nil}, op{"pub", "$KV.uims_keys.web"}, true},
		{brk, op{"pub", "$JS.API.STREAM.PURGE.UIMS_STATUS"}, false},
		// accounting (docs/ACCOUNTING.md): the brokers write the records and
		// create their stream; an observer (the operator view, billing)
		// reads them; no gateway, processor or command-line sender writes
		// or reads them, and nobody but the administrator purges them
		{brk, op{"pub", "uims.accounting.web.sms"}, true},
		{brk, op{"pub", "$JS.API.STREAM.CREATE.UIMS_ACCOUNTING"}, true},
		{brk, op{"pub", "$JS.API.STREAM.PURGE.UIMS_ACCOUNTING"}, false},
		{brk, op{"pub", "$JS.API.STREAM.UPDATE.UIMS_ACCOUNTING"}, false},
		{brk, op{"queue", "uims.broker.usage"}, true},
		{web, op{"pub", "uims.accounting.web.web"}, false},
		{web, op{"sub", "uims.accounting.>"}, false},
		{web, op{"pub", "$JS.API.STREAM.CREATE.UIMS_ACCOUNTING"}, false},
		{web, op{"pub", "$JS.API.CONSUMER.CREATE.UIMS_ACCOUNTING.x"}, false},
		{web, op{"pub", "$JS.API.DIRECT.GET.UIMS_ACCOUNTING.uims.accounting.web.web"}, false},
		{bot, op{"pub", "uims.accounting.mybot.web"}, false},
		{proc, op{"pub", "uims.accounting.web.fax"}, false},
		// the group-commit journals (internal/groupcommit): recovery writes
		// their records back, so only the stream's own writers may add to
		// them, and only they read them
		{brk, op{"pub", "uims.journal.accounting"}, true},
		{brk, op{"pub", "$JS.API.STREAM.CREATE.UIMS_ACCOUNTING_JOURNAL"}, true},
		{brk, op{"pub", "uims.journal.inbox"}, false},
		{web, op{"pub", "uims.journal.accounting"}, false},
		{web, op{"sub", "uims.journal.>"}, false},
		{web, op{"pub", "$JS.API.CONSUMER.CREATE.UIMS_ACCOUNTING_JOURNAL.x"}, false},
		{web, op{"pub", "uims.journal.inbox"}, true},
		{web, op{"pub", "$JS.API.STREAM.CREATE.UIMS_INBOX_JOURNAL"}, true},
		{email, op{"pub", "uims.journal.inbox"}, false},
		{email, op{"pub", "$JS.API.DIRECT.GET.UIMS_INBOX_JOURNAL"}, false},
		{email, op{"pub", "$JS.API.CONSUMER.CREATE.UIMS_INBOX_JOURNAL.x"}, false},
		{bot, op{"pub", "uims.journal.inbox"}, false},
		{proc, op{"pub", "uims.journal.accounting"}, false},
		{cli, op{"pub", "uims.accounting.cli.web"}, false},
		{observer, op{"sub", "uims.accounting.>"}, true},
		{observer, op{"pub", "$JS.API.CONSUMER.CREATE.UIMS_ACCOUNTING.o1"}, true},
		{observer, op{"pub", "$JS.API.CONSUMER.CREATE.UIMS_ACCOUNTING.o1.uims.accounting.>"}, true},
		{observer, op{"pub", "$JS.API.CONSUMER.MSG.NEXT.UIMS_ACCOUNTING.o1"}, true},
		{observer, op{"pub", "$JS.API.CONSUMER.DELETE.UIMS_ACCOUNTING.o1"}, true},
		{observer, op{"pub", "$JS.ACK.UIMS_ACCOUNTING.billing.1.5.5.1700000000000000000.0"}, true},
		{web, op{"pub", "$JS.ACK.UIMS_ACCOUNTING.billing.1.5.5.1700000000000000000.0"}, false},
		{observer, op{"pub", "uims.accounting.web.web"}, false},
		{observer, op{"pub", "$JS.API.STREAM.PURGE.UIMS_ACCOUNTING"}, false},
		{observer, op{"pub", "$JS.API.STREAM.DELETE.UIMS_ACCOUNTING"}, false},
		{observer, op{"pub", "$JS.API.CONSUMER.CREATE.UIMS_STATUS.o1"}, false},
		// the audit trail (PROTOCOL.md §15): the brokers append to it; no
		// gateway, processor or command-line sender writes, deletes or
		// reads it; the observer reads it and writes nothing
		{brk, op{"pub", "uims.audit.b1"}, true},
		{brk, op{"pub", "$JS.API.STREAM.CREATE.UIMS_AUDIT"}, true},
		{brk, op{"pub", "$JS.API.STREAM.MSG.DELETE.UIMS_AUDIT"}, false},
		{brk, op{"pub", "$JS.API.STREAM.PURGE.UIMS_AUDIT"}, false},
		{web, op{"pub", "uims.audit.b1"}, false},
		{web, op{"pub", "uims.audit.web"}, false},
		{web, op{"pub", "$JS.API.STREAM.MSG.DELETE.UIMS_AUDIT"}, false},
		{web, op{"pub", "$JS.API.STREAM.DELETE.UIMS_AUDIT"}, false},
		{web, op{"pub", "$JS.API.STREAM.CREATE.UIMS_AUDIT"}, false},
		{web, op{"pub", "$JS.API.CONSUMER.CREATE.UIMS_AUDIT.x"}, false},
		{bot, op{"pub", "uims.audit.b1"}, false},
		{proc, op{"pub", "uims.audit.b1"}, false},
		{cli, op{"pub", "uims.audit.b1"}, false},
		{observer, op{"pub", "$JS.API.CONSUMER.CREATE.UIMS_AUDIT.o1"}, true},
		{observer, op{"pub", "$JS.API.STREAM.INFO.UIMS_AUDIT"}, true},
		{observer, op{"pub", "uims.audit.b1"}, false},
		{observer, op{"pub", "$JS.API.STREAM.MSG.DELETE.UIMS_AUDIT"}, false},
		// the usage query (PROTOCOL.md §6.17): gateways and the
		// command-line sender ask it, nobody but the brokers serves it
		{web, op{"pub", "uims.broker.usage"}, true},
		{cli, op{"pub", "uims.broker.usage"}, true},
		{web, op{"sub", "uims.broker.usage"}, false},
		{observer, op{"pub", "uims.broker.usage"}, false},
		// the command-line sender is a gateway that receives nothing
		{cli, op{"pub", "uims.broker.imi"}, true},
		{cli, op{"sub", "uims.gw.web.im"}, false},
		{cli, op{"pub", "uims.inbox.0.bob.m1"}, false},
		// the operator's observer reads everything and writes nothing
		{observer, op{"sub", "uims.>"}, true},
		{observer, op{"pub", "$SRV.PING"}, true},
		{observer, op{"pub", "uims.broker.imi"}, false},
		{observer, op{"pub", "uims.broker.cancel"}, false},
		{observer, op{"pub", "uims.broker.profile"}, false},
		{observer, op{"pub", "uims.inbox.0.bob.m1"}, false},
		{observer, op{"pub", "$JS.API.STREAM.PURGE.UIMS_INBOX_0"}, false},
		// ... but its own bucket of timelines (the operator view, package ops)
		{observer, op{"pub", "$KV.uims_ops.tl.0123456789abcdef0123456789abcdef"}, true},
		{observer, op{"pub", "$JS.API.STREAM.CREATE.KV_uims_ops"}, true},
		{observer, op{"pub", "$JS.API.DIRECT.GET.KV_uims_ops.$KV.uims_ops.tl.0123456789abcdef0123456789abcdef"}, true},
		{observer, op{"pub", "$JS.API.CONSUMER.CREATE.KV_uims_ops.o1.$KV.uims_ops.tl.>"}, true},
		{observer, op{"pub", "$JS.API.STREAM.DELETE.KV_uims_ops"}, false},
		{observer, op{"pub", "$JS.API.STREAM.PURGE.KV_uims_ops"}, false},
		{observer, op{"pub", "$KV.uims_keys.web"}, false},
		{observer, op{"pub", "$KV.uims_miap.epoch"}, false},
		{observer, op{"pub", "$JS.API.STREAM.CREATE.UIMS_INBOX_0"}, false},
		{observer, op{"pub", "$JS.API.STREAM.UPDATE.KV_uims_keys"}, false},
		{web, op{"pub", "$KV.uims_ops.tl.0123456789abcdef0123456789abcdef"}, false},
		{web, op{"pub", "$JS.API.DIRECT.GET.KV_uims_ops.$KV.uims_ops.tl.0123456789abcdef0123456789abcdef"}, false},
	}
	for _, c := range cases {
		name := c.who.name + " " + c.op.kind + " " + c.op.subject
		t.Run(name, func(t *testing.T) {
			errs := make(chan error, 4)
			nc := natstest.ConnectAs(t, ns, a, c.who.name, c.who.role, c.who.media, errs)
			switch c.op.kind {
			case "sub":
				_, err = nc.SubscribeSync(c.op.subject)
			case "queue":
				_, err = nc.QueueSubscribeSync(c.op.subject, "q")
			case "pub":
				err = nc.Publish(c.op.subject, []byte("x"))
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			var got error
			select {
			case got = <-errs:
			case <-time.After(map[bool]time.Duration{true: 200 * time.Millisecond, false: 3 * time.Second}[c.allow]):
			}
			switch {
			case c.allow && got != nil:
				t.Errorf("allowed operation refused: %v", got)
			case !c.allow && got == nil:
				t.Errorf("denied operation went through silently")
			case !c.allow && !errors.Is(got, nats.ErrPermissionViolation) && !strings.Contains(got.Error(), "Permissions Violation"):
				t.Errorf("denied with %v, want a permissions violation", got)
			}
		})
	}
}

func TestRevokedPartyDisconnected(t *testing.T) {
	a, err := natsauth.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ns := natstest.RunAuth(t, a)
	closed := make(chan struct{})
	creds, err := a.Issue("mybot", natsauth.RoleGateway, []string{"bot"})
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := natsauth.CredsOption("mybot", creds)
	opts = append(opts, nats.MaxReconnects(0), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	nc, err := nats.Connect(ns.ClientURL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	if err := a.Revoke("mybot"); err != nil {
		t.Fatal(err)
	}
	sysCreds, err := a.SystemCreds()
	if err != nil {
		t.Fatal(err)
	}
	sopts, _ := natsauth.CredsOption("", sysCreds)
	sys, err := nats.Connect(ns.ClientURL(), sopts...)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	if err := natsauth.Push(sys, a.AccountJWT()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked party's connection is still open")
	}
	if _, err := nats.Connect(ns.ClientURL(), append(opts[:2:2], nats.MaxReconnects(0))...); err == nil {
		t.Fatal("a revoked party connected again")
	}
	if _, ok := a.Identity("mybot"); ok {
		t.Error("the authority still lists the revoked party")
	}
	// the authority reopened from its folder keeps the revocation
	b, err := natsauth.Open(a.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if b.AccountJWT() != a.AccountJWT() {
		t.Error("the account JWT was not saved")
	}
}

// The kept-content bucket end to end under the permissions: a gateway
// creates its own key-value bucket and object store, puts, gets and
// deletes content there (what the kit does, PROTOCOL.md §6.15); another
// gateway can neither read them nor delete from them.
func TestKeptContentBucketIsOwn(t *testing.T) {
	a, err := natsauth.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ns := natstest.RunAuth(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	webJS, err := jetstream.New(natstest.ConnectAs(t, ns, a, web.name, web.role, web.media, nil))
	if err != nil {
		t.Fatal(err)
	}
	bucket := schemas.KeptContentBucket("web")
	kv, err := webJS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, TTL: time.Hour})
	if err != nil {
		t.Fatalf("web creates its bucket: %v", err)
	}
	if _, err := kv.Put(ctx, "m1", []byte("kept content")); err != nil {
		t.Fatalf("web puts: %v", err)
	}
	if e, err := kv.Get(ctx, "m1"); err != nil || string(e.Value()) != "kept content" {
		t.Fatalf("web gets: %v", err)
	}
	os, err := webJS.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: bucket, TTL: time.Hour})
	if err != nil {
		t.Fatalf("web creates its object store: %v", err)
	}
	if _, err := os.PutBytes(ctx, "m2", []byte("large kept content")); err != nil {
		t.Fatalf("web puts an object: %v", err)
	}
	if b, err := os.GetBytes(ctx, "m2"); err != nil || string(b) != "large kept content" {
		t.Fatalf("web gets an object: %q %v", b, err)
	}

	emailJS, err := jetstream.New(natstest.ConnectAs(t, ns, a, email.name, email.role, email.media, nil))
	if err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(ctx, 3*time.Second)
	defer cancel2()
	if other, err := emailJS.KeyValue(short, bucket); err == nil {
		if e, err := other.Get(short, "m1"); err == nil {
			t.Fatalf("email read web's kept content: %q", e.Value())
		}
		if err := other.Delete(short, "m1"); err == nil {
			t.Fatal("email deleted web's kept content")
		}
	}
	if other, err := emailJS.ObjectStore(short, bucket); err == nil {
		if b, err := other.GetBytes(short, "m2"); err == nil {
			t.Fatalf("email read web's kept object: %q", b)
		}
		if err := other.Delete(short, "m2"); err == nil {
			t.Fatal("email deleted web's kept object")
		}
	}
	if _, err := kv.Get(ctx, "m1"); err != nil {
		t.Fatalf("web's content after email's tries: %v", err)
	}
	if err := kv.Delete(ctx, "m1"); err != nil {
		t.Fatalf("web deletes: %v", err)
	}
	if _, err := kv.Get(ctx, "m1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("after the delete: %v", err)
	}
	if err := os.Delete(ctx, "m2"); err != nil {
		t.Fatalf("web deletes an object: %v", err)
	}
	if st, err := os.Status(ctx); err != nil || st.Size() > 1024 {
		t.Fatalf("the deleted object's chunks stay: %v %v", st, err)
	}
}
