package schemas_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/uims/uims/schemas"
)

var update = flag.Bool("update", false, "rewrite json/*.schema.json from the Go types")

// documents are the wire documents with a JSON Schema in json/, with the
// section of PROTOCOL.md that specifies them field by field.
var documents = map[string]struct {
	v       any
	section string
}{
	"imi":               {schemas.IMI{}, "§13.3"},
	"routed-imi":        {schemas.RoutedIMI{}, "§13.4"},
	"route-ack":         {schemas.RouteAck{}, "§13.5"},
	"route-ack-reply":   {schemas.RouteAckReply{}, "§13.5"},
	"conv-report":       {schemas.ConvReport{}, "§13.6"},
	"ack":               {schemas.Ack{}, "§13.7"},
	"ack-reply":         {schemas.AckReply{}, "§13.8"},
	"status-event":      {schemas.StatusEvent{}, "§13.9"},
	"status-query":      {schemas.StatusQuery{}, "§13.10"},
	"tx-status":         {schemas.TxStatus{}, "§13.10"},
	"client-query":      {schemas.ClientQuery{}, "§13.11"},
	"client-info":       {schemas.ClientInfo{}, "§13.11"},
	"announce":          {schemas.Announce{}, "§13.12"},
	"held-query":        {schemas.HeldQuery{}, "§13.13"},
	"held-reply":        {schemas.HeldReply{}, "§13.13"},
	"trace-event":       {schemas.TraceEvent{}, "§13.14"},
	"profile":           {schemas.Profile{}, "§13.14"},
	"accounting-record": {schemas.AccountingRecord{}, "§13.14"},
	"usage-query":       {schemas.UsageQuery{}, "§13.15"},
	"usage-reply":       {schemas.UsageReply{}, "§13.15"},
}

// line is the pattern of single-line text: no CR, LF or NUL (a medium may
// put it in a header line). JSON Schema counts maxLength in characters,
// the Go checks in bytes of UTF-8: the same for ASCII, and PROTOCOL.md
// names the byte limits as the normative ones.
const line = "^[^\r\n\x00]*$"

var (
	msgID    = map[string]any{"pattern": "^[0-9a-f]{32}$"}
	hex64    = map[string]any{"pattern": "^[0-9a-f]{64}$"}
	nonEmpty = map[string]any{"minLength": 1}
	states   = []string{schemas.StatusTransferred, schemas.StatusDelivered, schemas.StatusRead, schemas.StatusFailed}
	medium   = map[string]any{"pattern": "^[a-z0-9_-]{1,32}$"}
	attempt  = map[string]any{"minimum": 1}
	// groups are named groups of recipients (schemas.ValidateGroups).
	groups = map[string]any{"maxProperties": schemas.MaxGroups,
		"propertyNames": map[string]any{"pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"},
		"additionalProperties": map[string]any{"type": "array", "minItems": 1, "maxItems": schemas.MaxGroupRecipients,
			"items": map[string]any{"type": "string", "minLength": 1, "maxLength": 320, "pattern": `^[^\s\x00](?:[^\r\n\x00]*[^\s\x00])?$`,
				"not": map[string]any{"pattern": "^" + schemas.GroupPrefix}}}}
)

// constraints add what the Go types cannot say, by Go type and JSON
// property name: the checks of validate.go and of the brokers, with the
// limits PROTOCOL.md states. Every field named v is the constant 1.
var constraints = map[string]map[string]any{
	"Endpoint.medium":   nonEmpty,
	"Endpoint.address":  {"maxLength": 320, "pattern": line},
	"Endpoint.name":     {"maxLength": 256, "pattern": line},
	"Content.type":      {"minLength": 1, "maxLength": schemas.MaxContentType},
	"Content.length":    {"minimum": 0},
	"Content.sha256":    hex64,
	"Attachment.length": {"minimum": 0},
	"IMI.msg_id":        msgID,
	"IMI.gateway":       nonEmpty,
	"IMI.to":            {"minLength": 1, "maxLength": 320, "pattern": line},
	"IMI.subject":       {"maxLength": 998, "pattern": line},
	"IMI.in_reply_to":   msgID,
	"IMI.meta": {"maxProperties": schemas.MaxMeta, "propertyNames": map[string]any{"maxLength": 64, "pattern": line},
		"additionalProperties": map[string]any{"type": "string", "maxLength": 1024, "pattern": line}},
	"Hop.gateway":           nonEmpty,
	"Hop.medium":            nonEmpty,
	"Step.conversion":       nonEmpty,
	"Step.processor":        nonEmpty,
	"Step.to":               nonEmpty,
	"RoutedIMI.tx":          msgID,
	"RoutedIMI.attempt":     {"minimum": 1},
	"RoutedIMI.conversions": {"maxItems": schemas.MaxChain},
	"RoutedIMI.receipts":    {"items": map[string]any{"enum": []string{"delivery", "read", "failure"}}},
	"RouteAck.tx":           msgID,
	"ConvReport.tx":         nonEmpty,
	"ConvReport.msg_id":     msgID,
	"ConvReport.conversion": nonEmpty,
	"ConvReport.step":       {"minimum": 0},
	"Ack.tx":                nonEmpty,
	"Ack.msg_id":            msgID,
	"Ack.gateway":           nonEmpty,
	"Ack.status":            {"enum": states},
	"Ack.reason":            {"maxLength": 1024, "pattern": line},
	"AckReply.state":        {"enum": states},
	"StatusEvent.msg_id":    msgID,
	"StatusEvent.tx":        msgID,
	"StatusEvent.status":    {"enum": append(append([]string(nil), states...), schemas.StatusRerouted, schemas.StatusReleased)},
	"StatusEvent.attempt":   attempt,
	"StatusEvent.routed":    {"pattern": "^[A-Za-z0-9_-]*$"},
	"Attempt.attempt":       attempt,
	"Attempt.medium":        nonEmpty,
	"Attempt.gateway":       nonEmpty,
	"Attempt.outcome":       {"enum": []string{schemas.OutcomeFailed, schemas.OutcomeExpired}},
	"TxStatus.attempt":      attempt,
	"HistoryEntry.attempt":  attempt,
	"StatusQuery.msg_id":    msgID,
	"TxStatus.tx":           msgID,
	"TxStatus.msg_id":       msgID,
	"TxStatus.state":        {"enum": []string{schemas.StatusRouted, schemas.StatusTransferred, schemas.StatusDelivered, schemas.StatusRead, schemas.StatusFailed, schemas.StatusHeld}},
	"IMI.send_at":           {"minimum": 0},
	"IMI.expires":           {"minimum": 0},
	"RoutedIMI.held_until":  {"minimum": 0},
	"RoutedIMI.held":        {"maxLength": 256},
	"HistoryEntry.status": {"enum": []string{schemas.StatusAccepted, schemas.StatusRouted, "route-acknowledged", "converted",
		schemas.StatusTransferred, schemas.StatusDelivered, schemas.StatusRead, schemas.StatusFailed,
		schemas.HistoryAttemptFailed, schemas.StatusRerouted, schemas.HistoryRecorded, schemas.StatusHeld, schemas.StatusReleased}},
	"ClientQuery.kind": {"enum": []string{schemas.CredentialToken, schemas.CredentialSMPP, schemas.CredentialSMTP,
		schemas.ClientByAddress, schemas.ClientByID}},
	"ClientQuery.hash":     hex64,
	"Announce.gateway":     nonEmpty,
	"Announce.medium":      nonEmpty,
	"Announce.instance":    nonEmpty,
	"Announce.ttl":         {"minimum": 0, "maximum": schemas.MaxAnnounceTTL},
	"Conversion.name":      nonEmpty,
	"Conversion.cost":      {"minimum": 0, "maximum": schemas.MaxConversionCost},
	"HeldQuery.msg_id":     msgID,
	"HeldQuery.tx":         msgID,
	"Profile.token_sha256": hex64,
	"Profile.groups":       groups,
	"ClientInfo.groups":    groups,
	"Fallback.on":          {"items": map[string]any{"type": "string", "pattern": "^(permanent|deadline|none|[A-Z][A-Z_]*)$"}},
	"Fallback.after": {"propertyNames": medium,
		"additionalProperties": map[string]any{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`}},
	"Fallback.last_resort":          medium,
	"AccountingRecord.id":           {"pattern": "^[0-9a-f]{32}\\.[1-9][0-9]*\\.(delivered|read|failed|expired|cancelled)$"},
	"AccountingRecord.msg_id":       msgID,
	"AccountingRecord.tx":           msgID,
	"AccountingRecord.attempt":      attempt,
	"AccountingRecord.outcome":      {"enum": []string{schemas.OutcomeDelivered, schemas.OutcomeRead, schemas.OutcomeFailed, schemas.OutcomeExpired, schemas.OutcomeCancelled}},
	"AccountedContent.length":       {"minimum": 0},
	"AccountedContent.attachments":  {"minimum": 0},
	"UsageQuery.kind":               {"enum": []string{schemas.CredentialToken, schemas.CredentialSMPP, schemas.CredentialSMTP, schemas.ClientByID}},
	"UsageQuery.hash":               hex64,
	"UsageQuery.days":               {"minimum": 0, "maximum": schemas.MaxUsageDays},
	"UsageReply.days":               {"maxItems": schemas.MaxUsageDays},
	"UsageDay.day":                  {"pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
	"UsageDay.media":                {"propertyNames": nonEmpty},
	"Quota.limit":                   {"minimum": 0},
	"Quota.used":                    {"minimum": 0},
	"Quota.left":                    {"minimum": 0},
	"SMPPCredentials.password_hash": hex64,
	"SMTPCredentials.password_hash": hex64,
}

func schemaOf(t reflect.Type, key string) map[string]any {
	switch t.Kind() {
	case reflect.Pointer:
		return schemaOf(t.Elem(), key)
	case reflect.String:
		return with(map[string]any{"type": "string"}, key)
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Int32:
		return with(map[string]any{"type": "integer"}, key)
	case reflect.Slice:
		return with(map[string]any{"type": "array", "items": schemaOf(t.Elem(), "")}, key)
	case reflect.Map:
		return with(map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), "")}, key)
	case reflect.Struct:
		props := map[string]any{}
		var required []string
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			jname, opts, _ := strings.Cut(tag, ",")
			if jname == "-" || !f.IsExported() {
				continue
			}
			props[jname] = schemaOf(f.Type, t.Name()+"."+jname)
			if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") && f.Type.Kind() != reflect.Pointer {
				required = append(required, jname)
			}
		}
		sort.Strings(required)
		s := map[string]any{"type": "object", "properties": props}
		if len(required) > 0 {
			s["required"] = required
		}
		return s
	}
	panic("no schema for " + t.String())
}

func with(s map[string]any, key string) map[string]any {
	if strings.HasSuffix(key, ".v") {
		s["const"] = schemas.Version
	}
	for k, v := range constraints[key] {
		s[k] = v
	}
	return s
}

func generate(name string, v any, section string) []byte {
	s := schemaOf(reflect.TypeOf(v), "")
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["$id"] = "https://uims.example/schemas/" + name + ".schema.json"
	s["title"] = reflect.TypeOf(v).Name()
	s["description"] = "UIMS " + reflect.TypeOf(v).Name() + ", normative with miap/PROTOCOL.md " + section + " (field by field, units, limits in bytes)"
	b, _ := json.MarshalIndent(s, "", "  ")
	return append(b, '\n')
}

// TestSchemasMatchGoTypes: the committed JSON Schemas are what the Go types
// say (run with -update after changing a type), so the two cannot drift.
func TestSchemasMatchGoTypes(t *testing.T) {
	for name, d := range documents {
		path := filepath.Join("json", name+".schema.json")
		want := generate(name, d.v, d.section)
		if *update {
			os.WriteFile(path, want, 0o644)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the Go type %T: run go test ./schemas -update and review", path, d.v)
		}
	}
}

func compile(t *testing.T, name string) *jsonschema.Schema {
	c := jsonschema.NewCompiler()
	s, err := c.Compile(filepath.Join("json", name+".schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validate(s *jsonschema.Schema, doc []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

// good are documents as the Go code writes them, one or more per schema;
// TestWireBodies checks the bodies of a running fabric too.
func good() map[string][]any {
	id := "0123456789abcdef0123456789abcdef"
	imi := schemas.IMI{V: 1, MsgID: id, Gateway: "web", Instance: "web-1", From: schemas.Endpoint{Medium: "web", Address: "alice", Client: "alice", Name: "Alice"},
		To: "bob", Subject: "hi", Content: schemas.Content{Type: "text/plain; charset=utf-8", Length: 5, SHA256: strings.Repeat("a", 64),
			Attachments: []schemas.Attachment{{Name: "a.txt", Type: "text/plain", Length: 1}}},
		Created: 1790000000000, InReplyTo: id, Meta: map[string]string{"email.message_id": "<x@y>"}}
	dest := schemas.Hop{Gateway: "web", Medium: "web", Address: "bob"}
	return map[string][]any{
		"imi": {imi},
		"routed-imi": {schemas.RoutedIMI{V: 1, IMI: imi, Tx: id, Sender: "alice", Recipient: "bob", RecipientName: "Bob", Dest: dest,
			Conversions: []schemas.Step{{Conversion: "html2text", Processor: "proc", To: "text/plain; charset=utf-8"}},
			Routed:      1790000000000, Deadline: 1790000030000, Attempt: 1, Receipts: []string{"delivery", "read"}, Options: map[string]string{"sms.long": "shorten"}}},
		"route-ack":       {schemas.RouteAck{V: 1, Tx: id}},
		"route-ack-reply": {schemas.RouteAckReply{V: 1}},
		"conv-report":     {schemas.ConvReport{V: 1, Tx: id, MsgID: id, Conversion: "html2text", Step: 0, Content: imi.Content}},
		"ack": {schemas.Ack{V: 1, Tx: id, MsgID: id, Gateway: "web", Status: "delivered", At: 3, Relayed: true},
			schemas.Ack{V: 1, Tx: id, MsgID: id, Gateway: "web", Status: "failed", Code: "UNKNOWN_RECIPIENT", Reason: "no such mailbox", At: 3}},
		"ack-reply": {schemas.AckReply{V: 1, Tx: id, State: "delivered", Duplicate: true}},
		"status-event": {schemas.StatusEvent{V: 1, Tx: id, MsgID: id, Status: "read", At: 4, Sender: "alice", From: imi.From, To: "bob", Dest: dest,
			Subject: "hi", Meta: imi.Meta},
			schemas.StatusEvent{V: 1, Tx: id, MsgID: id, Status: "rerouted", Code: "UNKNOWN_RECIPIENT", Reason: "email failed: 550 5.1.1 no such mailbox; now web",
				At: 5, Sender: "alice", From: imi.From, To: "bob", Dest: dest, Attempt: 2, Routed: "eyJ2IjoxfQ",
				Earlier: []schemas.Attempt{{Attempt: 1, Medium: "email", Gateway: "email", Address: "bob@example.test", Outcome: "failed",
					Code: "UNKNOWN_RECIPIENT", Reason: "550 5.1.1 no such mailbox", At: 4}}}},
		"status-query": {schemas.StatusQuery{V: 1, MsgID: id}},
		"tx-status": {schemas.TxStatus{V: 1, Tx: id, MsgID: id, State: "routed", Sender: "alice", To: "bob", Dest: dest,
			History: []schemas.HistoryEntry{{Status: "accepted", At: 1, Party: "web"}, {Status: "routed", At: 2, Reason: "to web:bob", Party: "broker-1"}}},
			schemas.TxStatus{V: 1, Tx: id, MsgID: id, State: "delivered", Sender: "alice", To: "bob", Dest: dest, Attempt: 2,
				History: []schemas.HistoryEntry{{Status: "accepted", At: 1, Party: "web"}, {Status: "routed", At: 2, Reason: "to email:bob@example.test", Party: "broker-1"},
					{Status: "attempt-failed", At: 3, Code: "UNKNOWN_RECIPIENT", Reason: "550 5.1.1 no such mailbox", Party: "email", Attempt: 1, Medium: "email"},
					{Status: "rerouted", At: 3, Reason: "to web:bob", Party: "broker-1", Attempt: 2, Medium: "web"},
					{Status: "delivered", At: 4, Party: "web", Attempt: 2, Medium: "web"}}}},
		"client-query": {schemas.ClientQuery{V: 1, Kind: "token", Hash: strings.Repeat("b", 64)}, schemas.ClientQuery{V: 1, Kind: "address", Medium: "sms", User: "+15550100"}},
		"client-info": {schemas.ClientInfo{V: 1, ID: "alice", Name: "Alice", Addresses: map[string]string{"web": "alice"}, Prefer: []string{"web"},
			Receipts: schemas.ReceiptPrefs{Delivery: true}}},
		"announce": {schemas.Announce{V: 1, Gateway: "proc", Medium: "processor", Instance: "a", Conversions: []schemas.Conversion{{Name: "html2text", From: "text/html", To: "text/plain"}}, TTL: 3000, At: 5},
			schemas.Announce{V: 1, Gateway: "email", Medium: "email", Instance: "b", Accepts: []string{"text/*"}, Reach: []string{"*"}, TTL: 0, At: 5}},
		"held-query":  {schemas.HeldQuery{V: 1, MsgID: id, Tx: id, Recipient: "bob", Dest: dest}},
		"held-reply":  {schemas.HeldReply{V: 1, Held: false, Later: true}},
		"trace-event": {schemas.TraceEvent{Step: "imi", MsgID: id, Tx: id, Party: "web", By: "broker-1", Result: "routed", At: 6, Dest: "web"}},
		"accounting-record": {schemas.AccountingRecord{V: 1, ID: id + ".1.delivered", MsgID: id, Tx: id, Attempt: 1, Sender: "alice", Recipient: "bob",
			Origin: schemas.Hop{Gateway: "web", Medium: "web", Address: "alice"}, Dest: dest, Content: schemas.AccountedContent{Type: "text/plain; charset=utf-8", Length: 5},
			Outcome: "delivered", Final: true, Accepted: 1790000000000, Routed: 1790000000001, At: 1790000000002, Broker: "broker-1"},
			schemas.AccountingRecord{V: 1, ID: id + ".1.failed", MsgID: id, Tx: id, Attempt: 1, Sender: "alice", Recipient: "bob",
				Origin: schemas.Hop{Gateway: "web", Medium: "web", Address: "alice"}, Dest: schemas.Hop{Gateway: "email", Medium: "email", Address: "bob@example.test"},
				Content: schemas.AccountedContent{Type: "text/html", Length: 50, Attachments: 1}, Conversions: []string{"html2text"},
				Outcome: "failed", Code: "UNKNOWN_RECIPIENT", Rerouted: true, Accepted: 1, Routed: 2, At: 3}},
		"usage-query": {schemas.UsageQuery{V: 1, Kind: "token", Hash: strings.Repeat("b", 64), Days: 7}, schemas.UsageQuery{V: 1, Kind: "id", User: "alice"}},
		"usage-reply": {schemas.UsageReply{V: 1, Client: "alice", Quota: schemas.Quota{Limit: 100, Used: 81, Left: 19, Resets: 1790035200000, Warned: true},
			Days: []schemas.UsageDay{{Day: "2026-12-05", Media: map[string]schemas.MediumUsage{"web": {Sent: 50, SentBytes: 250, Received: 3, ReceivedBytes: 40}}}, {Day: "2026-12-04"}}}},
		"profile": {schemas.Profile{V: 1, ID: "alice", Addresses: map[string]string{"web": "alice"}, Prefer: []string{"web"}},
			schemas.Profile{V: 1, ID: "bob", Addresses: map[string]string{"web": "bob", "email": "bob@example.test", "sms": "+15550100"}, Prefer: []string{"email", "sms"},
				Fallback: &schemas.Fallback{On: []string{"permanent", "REJECTED"}, After: map[string]string{"sms": "2m", "email": "1h30m"}, LastResort: "web"}}},
	}
}

// bad are documents each schema refuses, with what makes them wrong.
var bad = map[string]map[string]string{
	"imi": {
		"msg_id not hex":        `{"v":1,"msg_id":"XYZ","gateway":"web","from":{"medium":"web","address":"a"},"to":"bob","content":{"type":"text/plain","length":5,"sha256":"` + strings.Repeat("a", 64) + `"},"created":1}`,
		"to with a line break":  `{"v":1,"msg_id":"0123456789abcdef0123456789abcdef","gateway":"web","from":{"medium":"web","address":"a"},"to":"bob\r\nBcc: x","content":{"type":"text/plain","length":5,"sha256":"` + strings.Repeat("a", 64) + `"},"created":1}`,
		"content type over 256": `{"v":1,"msg_id":"0123456789abcdef0123456789abcdef","gateway":"web","from":{"medium":"web","address":"a"},"to":"bob","content":{"type":"text/plain; x=` + strings.Repeat("a", 250) + `","length":5,"sha256":"` + strings.Repeat("a", 64) + `"},"created":1}`,
	},
	"routed-imi":      {"no dest": `{"v":1,"imi":{},"tx":"0123456789abcdef0123456789abcdef","routed":1,"deadline":2,"attempt":1}`},
	"route-ack":       {"tx missing": `{"v":1}`},
	"route-ack-reply": {"version 2": `{"v":2}`},
	"conv-report":     {"negative step": `{"v":1,"tx":"t","msg_id":"0123456789abcdef0123456789abcdef","conversion":"c","step":-1,"content":{"type":"text/plain","length":1,"sha256":"` + strings.Repeat("a", 64) + `"}}`},
	"ack":             {"version 2": `{"v":2,"tx":"t","msg_id":"0123456789abcdef0123456789abcdef","gateway":"web","status":"delivered","at":1}`, "status accepted": `{"v":1,"tx":"t","msg_id":"0123456789abcdef0123456789abcdef","gateway":"web","status":"accepted","at":1}`},
	"ack-reply":       {"state routed": `{"v":1,"tx":"t","state":"routed"}`},
	"status-event":    {"no status": `{"v":1,"tx":"0123456789abcdef0123456789abcdef","msg_id":"0123456789abcdef0123456789abcdef","at":1,"from":{"medium":"web","address":"a"},"dest":{"gateway":"web","medium":"web","address":"b"}}`},
	"status-query":    {"short msg_id": `{"v":1,"msg_id":"0123"}`},
	"tx-status":       {"no history": `{"v":1,"tx":"0123456789abcdef0123456789abcdef","msg_id":"0123456789abcdef0123456789abcdef","state":"routed","dest":{"gateway":"web","medium":"web","address":"b"}}`},
	"client-query":    {"unknown kind": `{"v":1,"kind":"password"}`, "clear secret": `{"v":1,"kind":"token","hash":"alice-token"}`},
	"client-info":     {"no receipts": `{"v":1,"id":"alice"}`},
	"announce":        {"ttl in seconds beyond 600000 ms": `{"v":1,"gateway":"web","medium":"web","instance":"a","ttl":3600000,"at":1}`, "no instance": `{"v":1,"gateway":"web","medium":"web","instance":"","ttl":3000,"at":1}`},
	"held-query":      {"no dest": `{"v":1,"msg_id":"0123456789abcdef0123456789abcdef","tx":"0123456789abcdef0123456789abcdef"}`},
	"held-reply":      {"held missing": `{"v":1}`},
	"accounting-record": {"outcome routed": `{"v":1,"id":"0123456789abcdef0123456789abcdef.1.routed","msg_id":"0123456789abcdef0123456789abcdef","tx":"0123456789abcdef0123456789abcdef","attempt":1,"origin":{"gateway":"web","medium":"web","address":"a"},"dest":{"gateway":"web","medium":"web","address":"b"},"content":{"type":"text/plain","length":1},"outcome":"routed","accepted":1,"routed":2,"at":3}`,
		"attempt 0": `{"v":1,"id":"0123456789abcdef0123456789abcdef.0.delivered","msg_id":"0123456789abcdef0123456789abcdef","tx":"0123456789abcdef0123456789abcdef","attempt":0,"origin":{"gateway":"web","medium":"web","address":"a"},"dest":{"gateway":"web","medium":"web","address":"b"},"content":{"type":"text/plain","length":1},"outcome":"delivered","accepted":1,"routed":2,"at":3}`},
	"usage-query": {"clear token": `{"v":1,"kind":"token","hash":"alice-token"}`, "a year": `{"v":1,"kind":"id","user":"alice","days":365}`, "by address": `{"v":1,"kind":"address","user":"+15550100"}`},
	"usage-reply": {"no quota": `{"v":1,"client":"alice","days":[]}`, "day as a number": `{"v":1,"client":"alice","quota":{"limit":0,"used":0,"left":0,"resets":1},"days":[{"day":20261205}]}`},
	"trace-event": {"at as text": `{"step":"imi","party":"web","by":"a","result":"ok","at":"now"}`},
	"profile": {"no id": `{"v":1}`, "fallback on a word it does not know": `{"v":1,"id":"bob","fallback":{"on":["sometimes"]}}`,
		"fallback after in minutes as a number": `{"v":1,"id":"bob","fallback":{"after":{"sms":2}}}`,
		"fallback after without a unit":         `{"v":1,"id":"bob","fallback":{"after":{"sms":"120"}}}`},
}

// TestDocumentsValidate: documents the Go code writes validate against the
// schemas with an independent validator; broken ones do not. Every schema
// has both.
func TestDocumentsValidate(t *testing.T) {
	g := good()
	for name := range documents {
		if len(g[name]) == 0 || len(bad[name]) == 0 {
			t.Errorf("%s: no good or no bad document to check its schema with", name)
		}
		s := compile(t, name)
		for _, doc := range g[name] {
			b, _ := json.Marshal(doc)
			if err := validate(s, b); err != nil {
				t.Errorf("%s: %v\n%s", name, err, b)
			}
		}
		for why, doc := range bad[name] {
			if err := validate(s, []byte(doc)); err == nil {
				t.Errorf("%s: invalid document (%s) accepted: %s", name, why, doc)
			}
		}
	}
}

// TestVectorBodiesValidate: the bodies of the test vectors (§11) that are
// whole documents validate; the receipt, notification and conversion
// report there are shortened bodies for the MAC only.
func TestVectorBodiesValidate(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "miap", "testdata", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Frames []struct {
			Name  string
			Frame struct{ Purpose, Body string }
		}
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	schemaOfPurpose := map[string]string{"imi": "imi", "route": "routed-imi", "ticket": "routed-imi", "route-ack": "route-ack",
		"ack": "ack", "ack-reply": "ack-reply", "announce": "announce"}
	n := 0
	for _, fr := range v.Frames {
		name, ok := schemaOfPurpose[fr.Frame.Purpose]
		if !ok {
			continue
		}
		n++
		if err := validate(compile(t, name), []byte(fr.Frame.Body)); err != nil {
			t.Errorf("vector %q against %s: %v", fr.Name, name, err)
		}
	}
	if n < 7 {
		t.Fatalf("only %d vector bodies checked", n)
	}
}

func TestCodesStable(t *testing.T) {
	// The wire numbers of the first codes must never change (PROTOCOL.md §9).
	fixed := map[schemas.Code]string{1: "MALFORMED", 5: "BAD_MAC", 8: "REPLAY", 10: "ID_MISMATCH", 15: "QUARANTINE", 21: "BUSY", 27: "UNAUTHORIZED", 28: "STRICT_REQUIRED"}
	for c, name := range fixed {
		if c.String() != name {
			t.Errorf("code %d is %s, was %s: codes are append-only", c, c, name)
		}
		if got, ok := schemas.ParseCode(name); !ok || got != c {
			t.Errorf("ParseCode(%s) = %d", name, got)
		}
	}
	for _, c := range schemas.Codes() {
		if c.String() == "UNKNOWN_CODE" || c.Text() == "unknown error" {
			t.Errorf("code %d has no name or text", c)
		}
	}
	if e := schemas.ErrorFromHeader(schemas.ErrorHeader(schemas.CodeReplay)); e == nil || e.Code != schemas.CodeReplay {
		t.Errorf("error header round trip: %v", e)
	}
	if fmt.Sprint(schemas.ErrorFromHeader(map[string][]string{})) != "<nil>" {
		t.Error("no error headers must mean success")
	}
}

func FuzzIMIValidate(f *testing.F) {
	f.Add(`{"v":1,"msg_id":"0123456789abcdef0123456789abcdef","gateway":"web","from":{"medium":"web","address":"a"},"to":"b","content":{"type":"text/plain","length":1,"sha256":"` + strings.Repeat("a", 64) + `"},"created":1}`)
	f.Fuzz(func(t *testing.T, doc string) {
		var imi schemas.IMI
		if json.Unmarshal([]byte(doc), &imi) != nil {
			return
		}
		if imi.Validate() != nil {
			return
		}
		// A valid IMI has no line breaks where a medium would put it in a header.
		for _, s := range []string{imi.Subject, imi.To, imi.From.Address, imi.From.Name} {
			if strings.ContainsAny(s, "\r\n\x00") {
				t.Fatalf("valid IMI with a line break: %q", s)
			}
		}
	})
}
