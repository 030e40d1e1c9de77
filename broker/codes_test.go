package broker_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// signedMsg is a request on subject: a frame of party with body, signed
// with a fresh nonce as every gateway → broker frame.
func signedMsg(t *testing.T, f *fabrictest.Fabric, subject string, fr *miap.Frame) *nats.Msg {
	t.Helper()
	eng, _ := miap.New(miap.Config{Keys: f.Keyring(fr.Party)})
	if err := eng.Sign(fr); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(subject)
	fr.PutHeader(m.Header)
	m.Data = fr.Body
	return m
}

// noNonceMsg is a frame of party signed with no nonce at all (16 zero
// bytes, PROTOCOL.md §4.2), which the library's Sign never makes.
func noNonceMsg(t *testing.T, f *fabrictest.Fabric, subject string, fr *miap.Frame) *nats.Msg {
	t.Helper()
	var e miap.KeyEntry
	for _, k := range f.Keys.Keys {
		if k.Party == fr.Party {
			e = k
		}
	}
	master, _ := base64.StdEncoding.DecodeString(e.Secret)
	sub, err := miap.DeriveSubkey(master, fr.Purpose, fr.Party, e.Kid)
	if err != nil {
		t.Fatal(err)
	}
	fr.Kid = e.Kid
	fr.TS = time.Now().UnixMilli()
	h := hmac.New(sha256.New, sub)
	h.Write(miap.AppendMACInput(nil, fr))
	fr.MAC = h.Sum(nil)
	m := nats.NewMsg(subject)
	fr.PutHeader(m.Header)
	m.Data = fr.Body
	if m.Header.Get(miap.HdrNonce) != "" {
		t.Fatal("a zero nonce was written")
	}
	return m
}

func body(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// One fault, one code, at the brokers (PROTOCOL.md §8, §9, rev 1.3). Each
// case answered another code, or was accepted, before: an IMI without a
// nonce was routed once and then REPLAY; an ID of the wrong length was
// UNKNOWN_TX or ID_MISMATCH; a route-ack naming no transaction id was
// UNKNOWN_TX, where the acknowledgement answers MALFORMED for the same
// fault; a conversion report with a malformed msg_id was UNKNOWN_TX, where
// the status query answers MALFORMED; a document of another version went
// through as version 1 everywhere but in the IMI and the acknowledgement;
// a content type the destination's ticket header cannot carry was routed
// and then refused by the destination; a body null was BAD_VERSION.
func TestBrokerFaultCodes(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	profiles(f)
	ogKit, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "peer", Medium: "web"})
	waitRoute(t, ogKit)
	nc := f.Conn("prober")
	id := make([]byte, 32)
	msgID := kit.NewMsgID()

	noNonce := func() *nats.Msg {
		return noNonceMsg(t, f, schemas.SubjectBrokerIMI, &miap.Frame{Purpose: miap.PurposeIMI, Party: "test", Body: body(newIMI("test"))})
	}
	longType := newIMI("test")
	longType.Content.Type = "text/plain; x=" + strings.Repeat("a", 250)
	for _, tc := range []struct {
		name string
		m    *nats.Msg
		want schemas.Code
	}{
		{"imi without a nonce", noNonce(), schemas.CodeMalformed},
		{"imi without a nonce, again", noNonce(), schemas.CodeMalformed},
		{"imi body null", signedMsg(t, f, schemas.SubjectBrokerIMI, &miap.Frame{Purpose: miap.PurposeIMI, Party: "test", Body: []byte("null")}), schemas.CodeMalformed},
		{"status query body a list", signedMsg(t, f, schemas.SubjectBrokerStatus, &miap.Frame{Purpose: miap.PurposeQuery, Party: "test", Body: []byte("[]")}), schemas.CodeMalformed},
		{"imi with a content type over 256 bytes", signedMsg(t, f, schemas.SubjectBrokerIMI,
			&miap.Frame{Purpose: miap.PurposeIMI, Party: "test", Body: body(longType)}), schemas.CodeMalformed},
		{"ack with a 16-byte ID", signedMsg(t, f, schemas.SubjectBrokerAck, &miap.Frame{Purpose: miap.PurposeAck, Party: "peer", ID: id[:16],
			Body: body(schemas.Ack{V: 1, Tx: msgID, MsgID: msgID, Gateway: "peer", Status: "delivered", At: 1})}), schemas.CodeMalformed},
		{"route-ack without tx", signedMsg(t, f, schemas.SubjectBrokerRouteAck, &miap.Frame{Purpose: miap.PurposeRouteAck, Party: "test", ID: id,
			Body: []byte(`{"v":1}`)}), schemas.CodeMalformed},
		{"route-ack of version 2", signedMsg(t, f, schemas.SubjectBrokerRouteAck, &miap.Frame{Purpose: miap.PurposeRouteAck, Party: "test", ID: id,
			Body: body(schemas.RouteAck{V: 2, Tx: msgID})}), schemas.CodeBadVersion},
		{"route-ack of an unknown transaction", signedMsg(t, f, schemas.SubjectBrokerRouteAck, &miap.Frame{Purpose: miap.PurposeRouteAck, Party: "test", ID: id,
			Body: body(schemas.RouteAck{V: 1, Tx: msgID})}), schemas.CodeUnknownTx},
		{"conv with a malformed msg_id", signedMsg(t, f, schemas.SubjectBrokerConv, &miap.Frame{Purpose: miap.PurposeConv, Party: "proc", ID: id,
			Body: body(schemas.ConvReport{V: 1, Tx: "x", MsgID: "X", Conversion: "html2text"})}), schemas.CodeMalformed},
		{"conv of version 2", signedMsg(t, f, schemas.SubjectBrokerConv, &miap.Frame{Purpose: miap.PurposeConv, Party: "proc", ID: id,
			Body: body(schemas.ConvReport{V: 2, Tx: msgID, MsgID: msgID, Conversion: "html2text"})}), schemas.CodeBadVersion},
		{"status query of version 2", signedMsg(t, f, schemas.SubjectBrokerStatus, &miap.Frame{Purpose: miap.PurposeQuery, Party: "test",
			Body: body(schemas.StatusQuery{V: 2, MsgID: msgID})}), schemas.CodeBadVersion},
		{"client query of version 2", signedMsg(t, f, schemas.SubjectBrokerClient, &miap.Frame{Purpose: miap.PurposeQuery, Party: "test",
			Body: body(schemas.ClientQuery{V: 2, Kind: schemas.ClientByID, User: "bob"})}), schemas.CodeBadVersion},
		{"client query of an unknown kind", signedMsg(t, f, schemas.SubjectBrokerClient, &miap.Frame{Purpose: miap.PurposeQuery, Party: "test",
			Body: body(schemas.ClientQuery{V: 1, Kind: "phone", User: "bob"})}), schemas.CodeMalformed},
	} {
		if _, got := request(t, nc, tc.m); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
