package natsauth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"

	"github.com/nats-io/jwt/v2"

	"github.com/uims/uims/schemas"
)

// Role is what a party does in the fabric; it decides the party's NATS
// permissions (docs/SECURITY.md, "Permission matrix").
type Role string

// Roles.
const (
	// RoleAdmin provisions: streams, keys, profiles, parties. Everything.
	RoleAdmin Role = "admin"
	// RoleBroker serves uims.broker.> and reads the key registry.
	RoleBroker Role = "broker"
	// RoleGateway serves its own uims.gw.<self>.> and hands transfers on.
	RoleGateway Role = "gateway"
	// RoleProcessor serves uims.proc.> and hands converted content on.
	RoleProcessor Role = "processor"
	// RoleClient is the command-line sender (uims send): a gateway that
	// receives nothing but its own status notifications.
	RoleClient Role = "client"
	// RoleObserver reads every uims subject and the JetStream and service
	// listings, and publishes nothing but service discovery requests and
	// the operator view's own bucket (schemas.OpsBucket).
	RoleObserver Role = "observer"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	switch r {
	case RoleAdmin, RoleBroker, RoleGateway, RoleProcessor, RoleClient, RoleObserver:
		return true
	}
	return false
}

// InboxPrefix is the reply-subject prefix of a party: every party connects
// with nats.CustomInboxPrefix(InboxPrefix(name)) and may subscribe only
// below it, so that no party reads replies meant for another.
func InboxPrefix(party string) string { return "_INBOX." + party }

// Streams and buckets the roles use, by name (the JetStream API subjects
// name the stream).
const (
	ackStream     = "UIMS_ACKS"
	keyStream     = "KV_" + schemas.KeyBucket
	epochStream   = "KV_uims_miap"
	contentStream = "OBJ_uims_content"
	// WebInboxShards is how many web inbox streams a web gateway identity
	// may use (UIMS_WEB_INBOX_SHARDS up to this).
	WebInboxShards = 16
)

// perms collects allow lists.
type perms struct{ pub, sub []string }

func (p *perms) pubs(s ...string) { p.pub = append(p.pub, s...) }
func (p *perms) subs(s ...string) { p.sub = append(p.sub, s...) }

// api is a JetStream API subject.
func api(s string) string { return "$JS.API." + s }

// createStream lets a party create (never delete, purge or reconfigure) a
// shared stream and read its configuration.
func (p *perms) createStream(stream string) {
	p.pubs(api("STREAM.INFO."+stream), api("STREAM.CREATE."+stream))
}

// ownStream gives a party full use of a stream of its own: create, update,
// consumers of any filter, direct and stored reads, acks. Not delete or purge.
func (p *perms) ownStream(stream string) {
	p.createStream(stream)
	p.pubs(api("STREAM.UPDATE."+stream), api("STREAM.MSG.GET."+stream),
		api("DIRECT.GET."+stream), api("DIRECT.GET."+stream+".>"),
		api("CONSUMER.*."+stream+".>"), api("CONSUMER.MSG.NEXT."+stream+".>"),
		"$JS.ACK."+stream+".>", "$JS.ACK.*.*."+stream+".>", "$JS.FC."+stream+".>", "$JS.FC.*.*."+stream+".>")
}

// consumer lets a party create, read and ack one durable consumer with one
// filter subject on a shared stream: the filter is part of the API subject,
// so the server refuses any other (nats-server checks the request's filter
// against the subject's).
func (p *perms) consumer(stream, durable, filter string) {
	p.pubs(api("CONSUMER.CREATE."+stream+"."+durable+"."+filter), api("CONSUMER.INFO."+stream+"."+durable),
		api("CONSUMER.MSG.NEXT."+stream+"."+durable),
		"$JS.ACK."+stream+"."+durable+".>", "$JS.ACK.*.*."+stream+"."+durable+".>")
}

// kv gives full use of a key-value bucket of the party's own.
func (p *perms) kv(bucket string) {
	p.ownStream("KV_" + bucket)
	p.pubs("$KV." + bucket + ".>")
}

// objects gives full use of an object store bucket of the party's own.
func (p *perms) objects(bucket string) {
	p.ownStream("OBJ_" + bucket)
	p.pubs("$O." + bucket + ".>")
}

// content is the shared store of content carried by reference (PROTOCOL.md
// §10): put objects, and read one whose name (derived from the transfer's
// ID) is known; no listing (no consumer on the metadata subjects).
func (p *perms) content() {
	p.createStream(contentStream)
	p.pubs("$O.uims_content.>", api("STREAM.MSG.GET."+contentStream),
		api("DIRECT.GET."+contentStream+".$O.uims_content.M.*"),
		api("CONSUMER.CREATE."+contentStream+".*.$O.uims_content.C.*"),
		api("CONSUMER.MSG.NEXT."+contentStream+".*"), api("CONSUMER.DELETE."+contentStream+".*"),
		"$JS.FC."+contentStream+".>", "$JS.FC.*.*."+contentStream+".>")
}

// reader lets a party read a shared stream through consumers of its own
// (an ordered consumer; a durable one, whose messages it acknowledges, for
// a reader that keeps its place) and direct gets; never write to it, purge
// or delete it.
func (p *perms) reader(stream string) {
	p.pubs(api("CONSUMER.CREATE."+stream), api("CONSUMER.CREATE."+stream+".>"), api("CONSUMER.MSG.NEXT."+stream+".>"),
		api("CONSUMER.DELETE."+stream+".>"), api("STREAM.MSG.GET."+stream), api("DIRECT.GET."+stream), api("DIRECT.GET."+stream+".>"),
		"$JS.ACK."+stream+".>", "$JS.ACK.*.*."+stream+".>")
}

// ownKey lets a party read its own entry of the key registry (rotations
// reach it without a restart) and nothing else of it.
func (p *perms) ownKey(party string) {
	p.pubs(api("STREAM.INFO."+keyStream), api("DIRECT.GET."+keyStream+".$KV."+schemas.KeyBucket+"."+party))
}

// party is what every non-administrator party needs: its inbox, the
// JetStream account info, the brokers' queries, its trace batches.
func (p *perms) party(name string) {
	p.subs(InboxPrefix(name) + ".>")
	p.pubs(api("INFO"), schemas.TraceBatchSubject(name))
}

// fabric is what a gateway, a processor and the command-line sender share:
// requests to the brokers, transfers to gateways and processors, the kit's
// acknowledgement outbox and status notifications, content by reference.
func (p *perms) fabric(name string) {
	p.party(name)
	p.pubs(schemas.SubjectBrokerLogin, schemas.SubjectBrokerIMI, schemas.SubjectBrokerRouteAck,
		schemas.SubjectBrokerAck, schemas.SubjectBrokerStatus, schemas.SubjectBrokerClient, schemas.SubjectBrokerAnnounce,
		schemas.SubjectBrokerCancel, schemas.SubjectBrokerUsage,
		"uims.gw.*.im", "uims.gw.*.login", "uims.proc.>")
	p.content()
	p.ownKey(name)
}

// gateway adds a gateway's own subjects and the kit's streams.
func (p *perms) gateway(name string) {
	p.fabric(name)
	p.subs(schemas.GatewayIM(name), schemas.GatewayLogin(name), schemas.GatewayHeld(name), schemas.StatusFor(name))
	// discovery of its own micro service: the fabric-wide PING, INFO and
	// STATS, and those addressed to its name; never another service's
	svc := schemas.GatewayService(name)
	p.subs("$SRV.PING", "$SRV.INFO", "$SRV.STATS", "$SRV.*."+svc, "$SRV.*."+svc+".*")
	// the kit's acknowledgement outbox, and receipts it files for itself
	p.pubs("uims.acks."+name, schemas.StatusFor(name))
	p.createStream(ackStream)
	p.createStream(schemas.StatusStream)
	p.consumer(ackStream, "acks-"+name, "uims.acks."+name)
	p.consumer(schemas.StatusStream, "status-"+name, schemas.StatusFor(name))
	// the content it keeps for a reroute (PROTOCOL.md §6.15): its own
	// key-value bucket, and object store for large content; deleting an
	// object purges its chunks, so the purge of that one stream is allowed
	kept := schemas.KeptContentBucket(name)
	p.kv(kept)
	p.objects(kept)
	p.pubs(api("STREAM.PURGE.OBJ_" + kept))
}

// medium adds what the built-in gateway of one medium keeps in JetStream.
func (p *perms) medium(name, m string) {
	switch m {
	case schemas.MediumWeb:
		p.pubs("uims.inbox.>", "uims.read.>", "uims.web.events.>")
		p.subs("uims.web.events.>")
		for i := range WebInboxShards {
			p.ownStream("UIMS_INBOX_" + strconv.Itoa(i))
		}
		// the group-commit journal of the inbox (internal/groupcommit)
		p.ownStream("UIMS_INBOX_JOURNAL")
		p.pubs("uims.journal.inbox")
		// the single inbox stream of before shards, moved and then deleted
		p.ownStream("UIMS_INBOX")
		p.pubs(api("STREAM.DELETE.UIMS_INBOX"))
	case schemas.MediumEmail:
		p.pubs("uims.mail.*.out")
		p.ownStream("UIMS_MAIL_OUT")
		p.kv("uims_mail")
		p.objects("uims_mail_out")
	case schemas.MediumSMS:
		p.pubs("uims.sms.*.q.*")
		p.ownStream("UIMS_SMS")
		p.kv("uims_sms_apps")
		p.kv("uims_sms_smsc")
		p.kv("uims_sms_parts")
	case schemas.MediumFax:
		p.kv("uims_fax")
	case schemas.MediumVoice:
		// calls out until their outcome, and the audio they play, in
		// buckets of the party's own (an object's deletion is a purge of
		// its chunks, and a purge cannot be narrowed to some subjects)
		p.kv("uims_voice_" + name)
		p.objects("uims_voice_" + name)
		p.pubs(api("STREAM.PURGE.OBJ_uims_voice_" + name))
	}
}

// Permissions returns the NATS permissions of a party of role named name
// that speaks for media. Everything not listed is denied; no role but the
// administrator may delete or purge a stream, except that a gateway purges
// its own kept-content bucket (an object's deletion is a purge).
func Permissions(role Role, name string, media []string) jwt.Permissions {
	var p perms
	resp := &jwt.ResponsePermission{MaxMsgs: 1}
	switch role {
	case RoleAdmin:
		p.pubs(">")
		p.subs(">")
		resp = nil
	case RoleBroker:
		p.party(name)
		p.subs("uims.broker.>", "uims.profiles.changed", "$SRV.>")
		p.pubs("uims.gw.*.status", "uims.gw.*.held", "uims.profiles.changed")
		p.createStream(schemas.StatusStream)
		// accounting records (docs/ACCOUNTING.md): the brokers alone write them
		p.pubs(schemas.AccountingSubjects)
		// their own messages to clients (a quota warning, PROTOCOL.md
		// §6.17), transferred as an originator does; never served
		p.pubs("uims.gw.*.im", "uims.gw.*.login", "uims.proc.>")
		p.createStream(schemas.AccountingStream)
		// and its group-commit journal (internal/groupcommit)
		p.ownStream("UIMS_ACCOUNTING_JOURNAL")
		p.pubs("uims.journal.accounting")
		// the audit trail (PROTOCOL.md §15): the brokers alone append to
		// it; nobody but the administrator deletes from it
		p.pubs(schemas.AuditSubjects)
		p.createStream(schemas.AuditStream)
		p.kv("uims_miap")
		// content by reference (PROTOCOL.md §10): delete the objects of an
		// attempt that ended: read an object's metadata, write its delete
		// marker, purge its chunks; never read a chunk
		p.createStream(contentStream)
		p.pubs("$O.uims_content.M.>", api("DIRECT.GET."+contentStream+".$O.uims_content.M.*"),
			api("STREAM.PURGE."+contentStream))
		// the whole key registry, read only
		p.pubs(api("STREAM.INFO."+keyStream), api("STREAM.MSG.GET."+keyStream),
			api("DIRECT.GET."+keyStream), api("DIRECT.GET."+keyStream+".>"),
			api("CONSUMER.*."+keyStream+".>"), api("CONSUMER.MSG.NEXT."+keyStream+".>"),
			"$JS.FC."+keyStream+".>", "$JS.FC.*.*."+keyStream+".>")
	case RoleGateway, RoleClient:
		p.gateway(name)
		for _, m := range media {
			p.medium(name, m)
		}
	case RoleProcessor:
		p.fabric(name)
		p.subs("uims.proc.>", "$SRV.>")
		p.pubs(schemas.SubjectBrokerConv)
	case RoleObserver:
		p.subs("uims.>", "_INBOX.>", "$SRV.>")
		p.pubs("$SRV.>", api("INFO"), api("STREAM.NAMES"), api("STREAM.LIST"),
			api("STREAM.INFO.*"), api("CONSUMER.NAMES.*"), api("CONSUMER.LIST.*"), api("CONSUMER.INFO.*.*"))
		// the operator view's own bucket of timelines (package ops), and
		// nothing else it could write
		p.kv(schemas.OpsBucket)
		// the accounting records, read (the operator view's usage; a
		// billing system connects as an observer)
		p.reader(schemas.AccountingStream)
		// the audit trail, read (the operator view, `uims audit verify`)
		p.reader(schemas.AuditStream)
		p.pubs(api("STREAM.INFO." + schemas.AuditStream))
	}
	out := jwt.Permissions{Resp: resp}
	out.Pub.Allow.Add(p.pub...)
	out.Sub.Allow.Add(p.sub...)
	return out
}

// PermsDigest identifies the permissions Permissions gives: credentials
// whose identity records another digest were issued under older rules (a
// gateway before it owned uims_og_<self>, PROTOCOL.md §6.15).
func PermsDigest(role Role, name string, media []string) string {
	b, _ := json.Marshal(Permissions(role, name, media))
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
