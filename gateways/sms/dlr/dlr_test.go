package dlr

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func date(y int, mo time.Month, d, h, mi, s int) time.Time {
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
}

func TestParseCanonical(t *testing.T) {
	in := "id:1A2B sub:001 dlvrd:001 submit date:2401021504 done date:2401021505 stat:DELIVRD err:000 text:Hello world, this is"
	r, err := Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	want := Receipt{ID: "1A2B", Sub: 1, Dlvrd: 1, SubmitDate: date(2024, 1, 2, 15, 4, 0), DoneDate: date(2024, 1, 2, 15, 5, 0),
		Stat: StatDelivered, Err: "000", Text: "Hello world, this is"}
	if r != want {
		t.Fatalf("got  %+v\nwant %+v", r, want)
	}
	if got := Format(r); got != in {
		t.Fatalf("Format:\n%s\n%s", got, in)
	}
}

func TestParseTolerant(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Receipt
	}{
		{"lower case keys and stat", "ID:abc SUB:1 DLVRD:0 Submit Date:2401021504 DONE DATE:2401021505 Stat:undeliv Err:001 Text:x",
			Receipt{ID: "abc", Sub: 1, SubmitDate: date(2024, 1, 2, 15, 4, 0), DoneDate: date(2024, 1, 2, 15, 5, 0), Stat: StatUndeliverable, Err: "001", Text: "x"}},
		{"underscores", "id:7 submit_date:2312312359 done_date:240101000001 stat:EXPIRED",
			Receipt{ID: "7", SubmitDate: date(2023, 12, 31, 23, 59, 0), DoneDate: date(2024, 1, 1, 0, 0, 1), Stat: StatExpired}},
		{"no separator, long year", "id:7 submitdate:20240102150405 donedate:junk stat:REJECTD",
			Receipt{ID: "7", SubmitDate: date(2024, 1, 2, 15, 4, 5), Stat: StatRejected}},
		{"extra spaces", "  id : 42   sub:001  dlvrd:001   submit   date: 2401021504  stat :  DELIVRD   err:000  ",
			Receipt{ID: "42", Sub: 1, Dlvrd: 1, SubmitDate: date(2024, 1, 2, 15, 4, 0), Stat: StatDelivered, Err: "000"}},
		{"reordered", "stat:DELIVRD err:000 id:99 dlvrd:001 sub:001",
			Receipt{ID: "99", Sub: 1, Dlvrd: 1, Stat: StatDelivered, Err: "000"}},
		{"text before stat", "id:1 text:hello there stat:ACCEPTD",
			Receipt{ID: "1", Stat: StatAccepted, Text: "hello there"}},
		{"text contains keys", "id:1 stat:DELIVRD err:000 text:stat:FAKE id:2 done",
			Receipt{ID: "1", Stat: StatDelivered, Err: "000", Text: "stat:FAKE id:2 done"}},
		{"long stat spelling", "id:1 stat:Delivered", Receipt{ID: "1", Stat: StatDelivered}},
		{"unknown stat kept", "id:1 stat:weird", Receipt{ID: "1", Stat: "WEIRD"}},
		{"tabs and newline", "id:1\tstat:DELIVRD\ntext:a b", Receipt{ID: "1", Stat: StatDelivered, Text: "a b"}},
		{"bad numbers and dates", "id:1 sub:ND dlvrd:-1 submit date:2413011200 done date:24010215", Receipt{ID: "1"}},
		{"key inside word ignored", "id:1 xstat:DELIVRD", Receipt{ID: "1 xstat:DELIVRD"}},
		{"UUID id", "id:0e999f21-81ef-4974-a414-3de98174e3c7 stat:DELIVRD", Receipt{ID: "0e999f21-81ef-4974-a414-3de98174e3c7", Stat: StatDelivered}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if r != tc.want {
				t.Fatalf("got  %+v\nwant %+v", r, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"", "hello", "stat:DELIVRD err:000", "id: stat:DELIVRD", "xid:1 stat:DELIVRD", "id"} {
		if _, err := Parse(in); !errors.Is(err, ErrNotReceipt) || !strings.HasPrefix(err.Error(), "dlr: ") {
			t.Errorf("Parse(%q): %v", in, err)
		}
	}
}

func TestFormat(t *testing.T) {
	r := Receipt{ID: "abc", Sub: 1, Dlvrd: 0, Stat: StatUndeliverable, Text: "0123456789abcdefghijKLMNOP"}
	got := Format(r)
	want := "id:abc sub:001 dlvrd:000 submit date:0000000000 done date:0000000000 stat:UNDELIV err:000 text:0123456789abcdefghij"
	if got != want {
		t.Fatalf("\n%s\n%s", got, want)
	}
	// Text is cut at 20 characters, not octets.
	r.Text = strings.Repeat("é", 25)
	back, err := Parse(Format(r))
	if err != nil || back.Text != strings.Repeat("é", 20) {
		t.Fatalf("%q %v", back.Text, err)
	}
}

func TestStat(t *testing.T) {
	for s, want := range map[Stat]uint8{StatEnroute: 1, StatDelivered: 2, StatExpired: 3, StatDeleted: 4,
		StatUndeliverable: 5, StatAccepted: 6, StatUnknown: 7, StatRejected: 8, "X": 0} {
		if got := s.MessageState(); got != want {
			t.Errorf("%s: %d", s, got)
		}
	}
	if !StatDelivered.Final() || !StatRejected.Final() || StatAccepted.Final() || StatEnroute.Final() || Stat("X").Final() {
		t.Error("Final")
	}
}

func TestNormalizeID(t *testing.T) {
	tests := []struct {
		in   string
		keys []string
	}{
		{"", nil},
		{"  \x00", nil},
		{"1A2B", []string{"1a2b", "6699"}},
		{"6699", []string{"6699", "26265"}},
		{"00B8BE19", []string{"b8be19", "12107289"}},
		{"000", []string{"0"}},
		{"9", []string{"9"}},
		{"0E999F21-81EF-4974", []string{"e999f21-81ef-4974"}},
		{"812FC7470000001B", []string{"812fc7470000001b", "9308878062554710043"}},
		{"1812FC7470000001B", []string{"1812fc7470000001b"}}, // beyond 64 bits
		{"04062581461565934000241", []string{"4062581461565934000241"}},
		{" 42\x00", []string{"42", "66"}},
	}
	for _, tc := range tests {
		if got := NormalizeID(tc.in); !slices.Equal(got, tc.keys) {
			t.Errorf("NormalizeID(%q) = %q, want %q", tc.in, got, tc.keys)
		}
	}
}

func TestSameID(t *testing.T) {
	same := [][2]string{
		{"1A2B", "6699"},           // hex vs decimal
		{"6699", "1a2b"},           // either direction
		{"00B8BE19", "B8BE19"},     // Jasmin #1129: leading zeros
		{"39f99dd5", "0972660181"}, // Jasmin #1034: hex vs zero-padded decimal
		{"10C8F40D", "281605133"},  // Jasmin #535
		{"0e999f21-81ef-4974-a414-3de98174e3c7", "E999F21-81EF-4974-A414-3DE98174E3C7"}, // Jasmin #643
		{"abc", "ABC"},
		{"0", "000"},
		{"812FC7470000001B", "9308878062554710043"},
		{"04062581461565934000241", "4062581461565934000241"},
	}
	for _, p := range same {
		if !SameID(p[0], p[1]) {
			t.Errorf("SameID(%q, %q) = false", p[0], p[1])
		}
	}
	different := [][2]string{
		{"1A2B", "1A2C"},
		{"6699", "6698"},
		{"abc-1", "abc-01x"},
		{"", ""},
		{"", "0"},
		{"1A2B", "x1A2B"},
	}
	for _, p := range different {
		if SameID(p[0], p[1]) {
			t.Errorf("SameID(%q, %q) = true", p[0], p[1])
		}
	}
	// The documented ambiguity of all-digit ids.
	if !SameID("10", "16") {
		t.Error("10 (hex) should match 16 (decimal)")
	}
}
