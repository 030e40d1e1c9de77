package schemas_test

import (
	"bufio"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/uims/uims/schemas"
)

// Every code has one class (temporary or permanent), and PROTOCOL.md §9's
// table says the same: number, name and "retry" column (yes = temporary).
func TestCodeClassesMatchProtocol(t *testing.T) {
	f, err := os.Open("../miap/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| (\\d+) \\| `([A-Z_]+)` \\| (yes|no) \\|")
	doc := map[schemas.Code][2]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			n, _ := strconv.Atoi(m[1])
			doc[schemas.Code(n)] = [2]string{m[2], m[3]}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range schemas.Codes() {
		if c == schemas.CodeOK {
			if c.Class() != schemas.ClassNone || c.Retryable() || c.Permanent() {
				t.Errorf("OK is of class %s", c.Class())
			}
			continue
		}
		if c.Class() != schemas.ClassTemporary && c.Class() != schemas.ClassPermanent {
			t.Errorf("code %d %s has no class", c, c)
		}
		if c.Retryable() == c.Permanent() {
			t.Errorf("code %d %s: Retryable %v, Permanent %v", c, c, c.Retryable(), c.Permanent())
		}
		d, ok := doc[c]
		if !ok {
			t.Errorf("code %d %s is not in PROTOCOL.md §9", c, c)
			continue
		}
		want := "no"
		if c.Retryable() {
			want = "yes"
		}
		if d[0] != c.String() || d[1] != want {
			t.Errorf("PROTOCOL.md §9: %d %s retry %s; code %d %s is %s", c, d[0], d[1], c, c, c.Class())
		}
		delete(doc, c)
	}
	for n, d := range doc {
		t.Errorf("PROTOCOL.md §9 lists %d %s, which is no code", n, d[0])
	}
}

// The classes of the codes the gateways and the brokers decide on most,
// spelled out (issue 15): a missing centre or relay is UNREACHABLE, for
// good; no live gateway is NO_ROUTE, for now.
func TestCodeClasses(t *testing.T) {
	for c, want := range map[schemas.Code]schemas.Class{
		schemas.CodeNoRoute:          schemas.ClassTemporary,
		schemas.CodeBusy:             schemas.ClassTemporary,
		schemas.CodeStoreUnavailable: schemas.ClassTemporary,
		schemas.CodeQuarantine:       schemas.ClassTemporary,
		schemas.CodeClockSkew:        schemas.ClassTemporary,
		schemas.CodeInternal:         schemas.ClassTemporary,
		schemas.CodeUnreachable:      schemas.ClassPermanent,
		schemas.CodeUnknownRecipient: schemas.ClassPermanent,
		schemas.CodeQuotaExceeded:    schemas.ClassPermanent,
		schemas.CodeRejected:         schemas.ClassPermanent,
		schemas.CodeStrictRequired:   schemas.ClassPermanent,
		schemas.Code(9999):           schemas.ClassTemporary, // a newer peer's code: as INTERNAL
	} {
		if c.Class() != want {
			t.Errorf("%d %s: %s, want %s", c, c, c.Class(), want)
		}
	}
	if schemas.CodeUnreachable != 31 || schemas.CodeUnreachable.String() != "UNREACHABLE" {
		t.Errorf("UNREACHABLE is %d %s, want 31", schemas.CodeUnreachable, schemas.CodeUnreachable)
	}
	if c, ok := schemas.ParseCode("UNREACHABLE"); !ok || c != schemas.CodeUnreachable {
		t.Errorf("ParseCode(UNREACHABLE) = %d %v", c, ok)
	}
}
