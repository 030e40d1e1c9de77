package sms

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/uims/uims/gateways/sms/pdu"
)

// FuzzParseIncoming feeds arbitrary esm_class, data_coding, short_message
// and TLV octets to the short message interpretation: it never panics,
// every error is a rejection with a command_status, whole texts are valid
// UTF-8, and parts have a valid concatenation.
func FuzzParseIncoming(f *testing.F) {
	f.Add(uint8(0), uint8(0), []byte("hello"), []byte{})
	f.Add(uint8(0x40), uint8(0), []byte{5, 0, 3, 1, 2, 1, 'a'}, []byte{})
	f.Add(uint8(0x40), uint8(8), []byte{6, 8, 4, 1, 2, 3, 1, 0xD8, 0x3D, 0xDE, 0x00}, []byte{})
	f.Add(uint8(0x40), uint8(0), []byte{9, 0, 3}, []byte{})
	f.Add(uint8(0), uint8(1), []byte{0x1B, 0x65, '5'}, []byte{})
	f.Add(uint8(0), uint8(0xF1), []byte("class 1"), []byte{0x02, 0x0C, 0, 2, 0, 7, 0x02, 0x0E, 0, 1, 3, 0x02, 0x0F, 0, 1, 2})
	f.Fuzz(func(t *testing.T, esm, dcs uint8, data, rawTLVs []byte) {
		var tlvs pdu.TLVs
		for len(rawTLVs) >= 4 {
			n := min(int(rawTLVs[3]), len(rawTLVs)-4)
			tlvs = append(tlvs, pdu.TLV{Tag: pdu.Tag(uint16(rawTLVs[0])<<8 | uint16(rawTLVs[1])), Value: rawTLVs[4 : 4+n]})
			rawTLVs = rawTLVs[4+n:]
		}
		m, err := parseIncoming(esm, dcs, data, tlvs)
		if err != nil {
			var re *rejectError
			if !errors.As(err, &re) || re.status == pdu.ESME_ROK {
				t.Fatalf("error %v is not a rejection", err)
			}
			return
		}
		if m.concat.Total > 1 {
			if m.concat.Seq == 0 || m.concat.Seq > m.concat.Total {
				t.Fatalf("part %d of %d", m.concat.Seq, m.concat.Total)
			}
			return
		}
		if !utf8.ValidString(m.text) {
			t.Fatalf("invalid UTF-8 %q", m.text)
		}
	})
}

// FuzzAddress checks the address forms: a phone number written any way
// normalises to +digits, and the SMPP form of that is stable.
func FuzzAddress(f *testing.F) {
	for _, s := range []string{"+1 555 0100", "0044 (20) 7946-0000", "15550100", "alice", "", "+", "UIMS", "\x00\xff"} {
		f.Add(uint8(1), s)
	}
	f.Fuzz(func(t *testing.T, ton uint8, s string) {
		intl := address{TON: ton, Addr: s}.international()
		a := smppAddress(intl, 20)
		if len(a.Addr) > 20 {
			t.Fatalf("SMPP address %q longer than 20 octets", a.Addr)
		}
		for i := 0; i < len(a.Addr); i++ {
			if a.Addr[i] < 0x20 || a.Addr[i] > 0x7E {
				t.Fatalf("SMPP address %q has octet 0x%02X", a.Addr, a.Addr[i])
			}
		}
		if a.TON == tonInternational && strings.HasPrefix(intl, "+") {
			if back := a.international(); back != intl {
				t.Fatalf("%q -> %+v -> %q", intl, a, back)
			}
		}
	})
}
