package schemas

// NATS subjects (PROTOCOL.md §4). Brokers, gateways and processors subscribe in
// queue groups, so any number of instances share the load.
const (
	// SubjectPrefix starts every UIMS subject; `nats sub 'uims.>'` shows the fabric.
	SubjectPrefix = "uims"

	// SubjectBrokerLogin is the strict-mode TSCS login (PROTOCOL.md §6.1).
	SubjectBrokerLogin = "uims.broker.login"
	// SubjectBrokerIMI takes a signed IMI and answers with the routed IMI (§6.2, §6.3).
	SubjectBrokerIMI = "uims.broker.imi"
	// SubjectBrokerRouteAck takes the originator's acknowledgement of a routed IMI (§6.4).
	SubjectBrokerRouteAck = "uims.broker.routeack"
	// SubjectBrokerAck takes delivery, read and non-delivery acknowledgements (§6.8).
	SubjectBrokerAck = "uims.broker.ack"
	// SubjectBrokerConv takes a processor's report of converted content (§6.7).
	SubjectBrokerConv = "uims.broker.conv"
	// SubjectBrokerStatus answers status queries for a message (§6.10).
	SubjectBrokerStatus = "uims.broker.status"
	// SubjectBrokerClient resolves a client credential or address to a profile (§6.11).
	SubjectBrokerClient = "uims.broker.client"
	// SubjectBrokerCancel cancels a held message for its originator (§6.16).
	SubjectBrokerCancel = "uims.broker.cancel"
	// SubjectBrokerUsage answers a client's usage and quota (§6.17).
	SubjectBrokerUsage = "uims.broker.usage"
	// SubjectBrokerAnnounce takes gateway and processor heartbeats (§6.12).
	SubjectBrokerAnnounce = "uims.broker.announce"
	// SubjectBrokerProfile lists, stores and deletes client profiles for the
	// administrator (ProfileRequest → ProfileReply, plain JSON, no MIAP
	// frame). Administrator only: NATS permissions let no other identity
	// publish on it.
	SubjectBrokerProfile = "uims.broker.profile"

	// BrokerService is the nats micro service name of the broker.
	BrokerService = "uims-broker"
	// BrokerQueue is the queue group every broker instance joins.
	BrokerQueue = "uims-broker"

	// SubjectProfilesChanged is published (core NATS, no queue) when profiles
	// change, so that brokers drop their profile caches.
	SubjectProfilesChanged = "uims.profiles.changed"

	// SubjectTrace carries protocol-step events for observers, in batches:
	// uims.trace.<party>.batch. Nothing depends on them being received.
	SubjectTrace = "uims.trace"

	// StatusStream is the JetStream stream that holds status notifications
	// for originating gateways until they acknowledge them (§6.9).
	StatusStream = "UIMS_STATUS"
	// StatusSubjects is the subject filter of StatusStream.
	StatusSubjects = "uims.gw.*.status"
)

// GatewayIM is the subject on which gateway gw takes instant messages (§6.6).
func GatewayIM(gw string) string { return "uims.gw." + gw + ".im" }

// GatewayLogin is the strict-mode login subject of gateway gw (§6.5).
func GatewayLogin(gw string) string { return "uims.gw." + gw + ".login" }

// GatewayHeld is the subject on which brokers ask gateway gw whether it
// holds a message whose deadline passed (§6.14); only brokers may publish on it.
func GatewayHeld(gw string) string { return "uims.gw." + gw + ".held" }

// StatusFor is the subject of status notifications for originating gateway gw (§6.9).
func StatusFor(gw string) string { return "uims.gw." + gw + ".status" }

// ProcessorIM is the subject of the processor for one conversion (§6.7).
func ProcessorIM(conversion string) string { return "uims.proc." + conversion }

// ProcessorLogin is the strict-mode login subject of a conversion's processor.
func ProcessorLogin(conversion string) string { return "uims.proc." + conversion + ".login" }

// TraceBatchSubject is the subject of a party's batches of trace events
// (a JSON array of TraceEvent).
func TraceBatchSubject(party string) string { return SubjectTrace + "." + party + ".batch" }

// KeyBucket is the JetStream key-value bucket of the fabric's MIAP keys
// (PROTOCOL.md §3.3): one entry per party holding its key entries as JSON.
// Only the administrator writes it; brokers read it whole and each party
// reads its own entry, so keys added, rotated or removed reach every
// process without a restart.
const KeyBucket = "uims_keys"

// OpsBucket is the JetStream key-value bucket of the operator view's
// message timelines (package ops, docs/OPS.md): one entry per message
// (tl.<message id>), written and read by the observer parties alone.
const OpsBucket = "uims_ops"

// GatewayService is the nats micro service name of gateway gw: every
// instance of it answers $SRV.PING, INFO and STATS under this name, with
// the endpoints im, login and held in queue group GatewayQueue(gw).
func GatewayService(gw string) string { return "uims-gw-" + gw }

// GatewayQueue is the queue group every instance of gateway gw joins on its
// subjects.
func GatewayQueue(gw string) string { return "uims-gw-" + gw }

// KeptContentBucket is the JetStream key-value bucket (and, for content
// larger than a NATS message, the object store of the same name) in which
// originating gateway gw keeps the content of a message the brokers may
// route again (PROTOCOL.md §6.15), until its outcome: the gateway's own,
// which no other party may read.
func KeptContentBucket(gw string) string { return "uims_og_" + gw }
