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

// documents are the wire documents with a JSON Schema in json/.
var documents = map[string]any{
	"imi":          schemas.IMI{},
	"routed-imi":   schemas.RoutedIMI{},
	"ack":          schemas.Ack{},
	"ack-reply":    schemas.AckReply{},
	"status-event": schemas.StatusEvent{},
	"tx-status":    schemas.TxStatus{},
	"conv-report":  schemas.ConvReport{},
	"client-query": schemas.ClientQuery{},
	"client-info":  schemas.ClientInfo{},
	"announce":     schemas.Announce{},
	"profile":      schemas.Profile{},
}

// constraints add what the Go types cannot say, by JSON property name.
var constraints = map[string]map[string]any{
	"msg_id":        {"pattern": "^[0-9a-f]{32}$"},
	"in_reply_to":   {"pattern": "^[0-9a-f]{32}$"},
	"sha256":        {"pattern": "^[0-9a-f]{64}$"},
	"hash":          {"pattern": "^[0-9a-f]{64}$"},
	"token_sha256":  {"pattern": "^[0-9a-f]{64}$"},
	"password_hash": {"pattern": "^[0-9a-f]{64}$"},
	"v":             {"const": 1},
	"length":        {"minimum": 0},
	"subject":       {"maxLength": 998},
	"to":            {"minLength": 1, "maxLength": 320},
}

func schemaOf(t reflect.Type, name string) map[string]any {
	switch t.Kind() {
	case reflect.Pointer:
		return schemaOf(t.Elem(), name)
	case reflect.String:
		return with(map[string]any{"type": "string"}, name)
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Int32:
		return with(map[string]any{"type": "integer"}, name)
	case reflect.Slice:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), "")}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), "")}
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
			props[jname] = schemaOf(f.Type, jname)
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

func with(s map[string]any, name string) map[string]any {
	for k, v := range constraints[name] {
		s[k] = v
	}
	return s
}

func generate(name string, v any) []byte {
	s := schemaOf(reflect.TypeOf(v), "")
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["$id"] = "https://uims.example/schemas/" + name + ".schema.json"
	s["title"] = reflect.TypeOf(v).Name()
	b, _ := json.MarshalIndent(s, "", "  ")
	return append(b, '\n')
}

// TestSchemasMatchGoTypes: the committed JSON Schemas are what the Go types
// say (run with -update after changing a type), so the two cannot drift.
func TestSchemasMatchGoTypes(t *testing.T) {
	for name, v := range documents {
		path := filepath.Join("json", name+".schema.json")
		want := generate(name, v)
		if *update {
			os.WriteFile(path, want, 0o644)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the Go type %T: run go test ./schemas -update and review", path, v)
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

// TestDocumentsValidate: documents the Go code writes validate against the
// schemas with an independent validator; broken ones do not.
func TestDocumentsValidate(t *testing.T) {
	imi := schemas.IMI{V: 1, MsgID: "0123456789abcdef0123456789abcdef", Gateway: "web", From: schemas.Endpoint{Medium: "web", Address: "alice", Client: "alice"},
		To: "bob", Subject: "hi", Content: schemas.Content{Type: "text/plain", Length: 5, SHA256: strings.Repeat("a", 64)}, Created: 1}
	good := map[string]any{
		"imi":          imi,
		"routed-imi":   schemas.RoutedIMI{V: 1, IMI: imi, Tx: imi.MsgID, Dest: schemas.Hop{Gateway: "web", Medium: "web", Address: "bob"}, Deadline: 2, Attempt: 1},
		"ack":          schemas.Ack{V: 1, Tx: imi.MsgID, MsgID: imi.MsgID, Gateway: "web", Status: "delivered", At: 3},
		"status-event": schemas.StatusEvent{V: 1, Tx: imi.MsgID, MsgID: imi.MsgID, Status: "read", At: 4},
		"announce":     schemas.Announce{V: 1, Gateway: "proc", Medium: "processor", Instance: "a", Conversions: []schemas.Conversion{{Name: "html2text", From: "text/html", To: "text/plain"}}, TTL: 3000, At: 5},
		"profile":      schemas.Profile{V: 1, ID: "alice", Addresses: map[string]string{"web": "alice"}, Prefer: []string{"web"}},
	}
	for name, doc := range good {
		b, _ := json.Marshal(doc)
		if err := validate(compile(t, name), b); err != nil {
			t.Errorf("%s: %v\n%s", name, err, b)
		}
	}
	bad := map[string]string{
		"imi":          `{"v":1,"msg_id":"XYZ","gateway":"web","from":{"medium":"web","address":"a"},"to":"bob","content":{"type":"text/plain","length":5,"sha256":"00"},"created":1}`,
		"ack":          `{"v":2,"tx":"t","msg_id":"0123456789abcdef0123456789abcdef","gateway":"web","status":"delivered","at":1}`,
		"status-event": `{"v":1,"tx":"t","msg_id":"0123456789abcdef0123456789abcdef","at":1}`,
	}
	for name, doc := range bad {
		if err := validate(compile(t, name), []byte(doc)); err == nil {
			t.Errorf("%s: invalid document accepted: %s", name, doc)
		}
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
