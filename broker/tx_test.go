package broker

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/internal/redistest"
)

// The create script names the transaction's fields itself; they must be
// the f* constants the Go code reads, with the values in argument order.
func TestCreateScriptFields(t *testing.T) {
	_, rdb := redistest.Run(t)
	ctx := context.Background()
	id := "00112233445566778899aabbccddeeff"
	keys := []string{keyTx + id, keyTxHistory + id, keyDeadlines, keyQuota + "-"}
	args := []any{"fp-v", id, 1000, 0, 60, "h1", "h2", "routed-v", "id-v", "idh-v", "kid2-v", "sess-v", "og-v", "dg-v",
		"dest-v", "state-v", "sender-v", "recipient-v", "medium-v", "note-v", "deadline-v", "created-v", "limit-v", 2, "ah-v"}
	if err := createScript.Run(ctx, rdb, keys, args...).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := rdb.HGetAll(ctx, keyTx+id).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{fFingerprint: "fp-v", fRouted: "routed-v", fID: "id-v", fIDHash: "idh-v", fKid2: "kid2-v",
		fSession: "sess-v", fOG: "og-v", fDG: "dg-v", fDest: "dest-v", fState: "state-v", fSender: "sender-v",
		fRecipient: "recipient-v", fMedium: "medium-v", fNote: "note-v", fDeadline: "deadline-v", fCreated: "created-v",
		fLimit: "limit-v", fAuditN: "2", fAuditHead: "ah-v"}
	if len(got) != len(want) {
		t.Fatalf("fields %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("field %s = %q, want %q", k, got[k], v)
		}
	}
	hist, _ := rdb.LRange(ctx, keyTxHistory+id, 0, -1).Result()
	if !slices.Equal(hist, []string{"h1", "h2"}) {
		t.Fatalf("history %v", hist)
	}
	if ttl := rdb.TTL(ctx, keyTx+id).Val(); ttl <= 0 {
		t.Fatalf("no expiry: %v", ttl)
	}
	// the same message again: the stored route
	res, err := createScript.Run(ctx, rdb, keys, args...).StringSlice()
	if err != nil || res[0] != "exists" || res[1] != "fp-v" || res[2] != "routed-v" {
		t.Fatalf("again: %v %v", res, err)
	}
}

// createArgs must match createScript: its tags against the script's source
// (every ARGV the script reads is a field, stored in the hash field or used
// on the lines its tag names), and argv() against the tags.
func TestCreateArgsTags(t *testing.T) {
	used := map[int]bool{}
	for _, m := range regexp.MustCompile(`ARGV\[(\d+)\]`).FindAllStringSubmatch(createSrc, -1) {
		n, _ := strconv.Atoi(m[1])
		used[n] = true
	}
	keys := map[string]bool{}
	for _, m := range regexp.MustCompile(`KEYS\[\d+\]`).FindAllString(createSrc, -1) {
		keys[m] = true
	}
	// HSET tx, 'name', ARGV[n], ...
	hset := map[int]string{}
	call := regexp.MustCompile(`(?s)redis\.call\('HSET', tx,(.*?)\)\n`).FindStringSubmatch(createSrc)
	if call == nil {
		t.Fatal("no HSET in createScript")
	}
	for _, m := range regexp.MustCompile(`'(\w+)', ARGV\[(\d+)\]`).FindAllStringSubmatch(call[1], -1) {
		n, _ := strconv.Atoi(m[2])
		hset[n] = m[1]
	}
	fields := map[string]bool{fFingerprint: true, fIDHash: true, fCreated: true, fAuditN: true, fAuditHead: true}
	for _, f := range txFields {
		fields[f] = true
	}
	for _, name := range hset {
		if !fields[name] {
			t.Errorf("createScript stores %q, which is no f* constant", name)
		}
	}
	// the constants of argv(): ARGV index → hash field and value
	fixed := map[int][2]string{}

	var a createArgs
	v := reflect.ValueOf(&a).Elem()
	byIndex := map[int]reflect.StructField{}
	for i := 0; i < v.NumField(); i++ {
		sf := v.Type().Field(i)
		tag := sf.Tag.Get("argv")
		if tag == "" {
			continue
		}
		n, err := strconv.Atoi(tag)
		if err != nil || byIndex[n].Name != "" {
			t.Fatalf("%s: bad or repeated argv tag %q", sf.Name, tag)
		}
		byIndex[n] = sf
		// a distinct value for every field
		switch f := v.Field(i); f.Kind() {
		case reflect.String:
			f.SetString(sf.Name + "-v")
		case reflect.Int64:
			f.SetInt(int64(1000 + n))
		case reflect.Slice:
			f.SetBytes([]byte(sf.Name + "-v"))
		default:
			t.Fatalf("%s: type %s", sf.Name, f.Type())
		}
	}
	argv := a.argv()
	if len(argv) != len(used) || len(byIndex)+len(fixed) != len(argv) {
		t.Fatalf("createScript reads %d ARGV, argv() gives %d, createArgs tags %d and %d are fixed", len(used), len(argv), len(byIndex), len(fixed))
	}
	if got := len(a.keys()); got != len(keys) {
		t.Fatalf("createScript reads %d KEYS, keys() gives %d", len(keys), got)
	}
	lines := strings.Split(createSrc, "\n")
	for n := 1; n <= len(argv); n++ {
		if !used[n] {
			t.Errorf("createScript does not read ARGV[%d]", n)
			continue
		}
		if c, ok := fixed[n]; ok {
			if hset[n] != c[0] || argv[n-1] != c[1] {
				t.Errorf("ARGV[%d]: stored as %q with %v, want %q with %q", n, hset[n], argv[n-1], c[0], c[1])
			}
			continue
		}
		sf, ok := byIndex[n]
		if !ok {
			t.Errorf("ARGV[%d]: no field of createArgs", n)
			continue
		}
		if want := v.FieldByIndex(sf.Index).Interface(); !reflect.DeepEqual(argv[n-1], want) {
			t.Errorf("argv()[%d] = %v, want %s (%v)", n-1, argv[n-1], sf.Name, want)
		}
		if name := sf.Tag.Get("hset"); name != hset[n] {
			t.Errorf("%s: hset tag %q, createScript stores ARGV[%d] as %q", sf.Name, name, n, hset[n])
		}
		if word := sf.Tag.Get("lua"); word != "" {
			for _, l := range lines {
				if strings.Contains(l, fmt.Sprintf("ARGV[%d]", n)) && !strings.Contains(l, word) {
					t.Errorf("%s: lua tag %q, but createScript reads ARGV[%d] in %q", sf.Name, word, n, strings.TrimSpace(l))
				}
			}
		} else if hset[n] == "" {
			t.Errorf("%s: neither an hset nor a lua tag", sf.Name)
		}
	}
}

// What createScript makes of a createArgs: every field where its tag says.
func TestCreateArgsStored(t *testing.T) {
	_, rdb := redistest.Run(t)
	ctx := context.Background()
	a := createArgs{Fingerprint: "fp-v", MsgID: "00112233445566778899aabbccddeeff", Expiry: 5000, Quota: 1, Retention: 60,
		Accepted: "h1", RoutedEntry: "h2", Routed: []byte("routed-v"), ID: "id-v", IDHash: "idh-v", Kid2: "kid2-v",
		Session: "sess-v", OG: "og-v", DG: "dg-v", Dest: "dest-v", Sender: "sender-v", Recipient: "recipient-v",
		Medium: "medium-v", Note: []byte("note-v"), Deadline: 4000, Created: 3000, QuotaKey: keyQuota + "sender-v:20260101", State: "state-v"}
	res, err := createScript.Run(ctx, rdb, a.keys(), a.argv()...).StringSlice()
	if err != nil || res[0] != "created" {
		t.Fatalf("create: %v %v", res, err)
	}
	got, err := rdb.HGetAll(ctx, keyTx+a.MsgID).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	v := reflect.ValueOf(a)
	for i := 0; i < v.NumField(); i++ {
		if name := v.Type().Field(i).Tag.Get("hset"); name != "" {
			want[name] = fmt.Sprint(v.Field(i).Interface())
			if b, ok := v.Field(i).Interface().([]byte); ok {
				want[name] = string(b)
			}
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("stored %v, want %v", got, want)
	}
	if hist := rdb.LRange(ctx, keyTxHistory+a.MsgID, 0, -1).Val(); !slices.Equal(hist, []string{a.Accepted, a.RoutedEntry}) {
		t.Errorf("history %v", hist)
	}
	if s, err := rdb.ZScore(ctx, keyDeadlines, a.MsgID).Result(); err != nil || int64(s) != a.Expiry {
		t.Errorf("deadline %v %v, want %d", s, err, a.Expiry)
	}
	for _, k := range []string{keyTx + a.MsgID, keyTxHistory + a.MsgID} {
		if ttl := rdb.TTL(ctx, k).Val(); ttl <= 0 || ttl > time.Duration(a.Retention)*time.Second {
			t.Errorf("%s: expiry %v, want %ds", k, ttl, a.Retention)
		}
	}
	if n, _ := rdb.Get(ctx, a.QuotaKey).Int(); n != 1 {
		t.Errorf("quota count %d", n)
	}
	// over the quota: refused, and not counted
	b := a
	b.MsgID = "ffeeddccbbaa99887766554433221100"
	if res, err := createScript.Run(ctx, rdb, b.keys(), b.argv()...).StringSlice(); err != nil || res[0] != "quota" {
		t.Errorf("over quota: %v %v", res, err)
	}
	if n, _ := rdb.Get(ctx, a.QuotaKey).Int(); n != 1 {
		t.Errorf("quota count %d after a refusal", n)
	}
	// the same message again: the stored route
	res, err = createScript.Run(ctx, rdb, a.keys(), a.argv()...).StringSlice()
	if err != nil || !slices.Equal(res, []string{"exists", a.Fingerprint, string(a.Routed), a.ID, a.Session, a.State, a.Kid2}) {
		t.Errorf("again: %v %v", res, err)
	}
}
