package schemas

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// Every field of TraceEvent, set, comes out as encoding/json writes it: a
// field added to the type and not to AppendJSON fails here.
func TestTraceEventAppendJSONAllFields(t *testing.T) {
	var ev TraceEvent
	v := reflect.ValueOf(&ev).Elem()
	for i := range v.NumField() {
		switch f := v.Field(i); f.Kind() {
		case reflect.String:
			f.SetString("v<" + v.Type().Field(i).Name + ">\"\\\n\u2028é\xff")
		case reflect.Int64:
			f.SetInt(-1234567890123)
		case reflect.Bool:
			f.SetBool(true)
		default:
			t.Fatalf("field %s of kind %s: teach AppendJSON and this test", v.Type().Field(i).Name, f.Kind())
		}
	}
	checkTraceJSON(t, &ev)
	checkTraceJSON(t, &TraceEvent{}) // every omitempty field left out
}

func checkTraceJSON(t *testing.T, ev *TraceEvent) {
	t.Helper()
	want, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if got := ev.AppendJSON(nil); !bytes.Equal(got, want) {
		t.Fatalf("AppendJSON\n got %s\nwant %s", got, want)
	}
}

func FuzzTraceEventAppendJSON(f *testing.F) {
	f.Add("deliver", "0123456789abcdef0123456789abcdef", "web", "delivered", int64(1764300000000), true, "<&>\"\\\t\x01\x7f")
	f.Add("", "", "", "", int64(0), false, "\xed\xa0\x80\u2029\U0001F600")
	f.Fuzz(func(t *testing.T, step, id, party, result string, at int64, match bool, text string) {
		checkTraceJSON(t, &TraceEvent{Step: step, MsgID: id, Tx: id, Party: party, By: text, Result: result, At: at,
			Dest: text, Status: result, IDMatch: match, ID: text, Conversion: step, Next: party, Sender: text, Recipient: id, To: text, Code: step})
	})
}
