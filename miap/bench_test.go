package miap_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/uims/uims/miap"
)

// A 500-byte IMI, the size the issue benchmarks.
var imi500 = bytes.Repeat([]byte("x"), 500)

func BenchmarkSignIMI500(b *testing.B) {
	e, _ := miap.New(miap.Config{Keys: testKeys(b)})
	f := &miap.Frame{Purpose: miap.PurposeIMI, Party: "web", Body: imi500}
	b.ReportAllocs()
	for b.Loop() {
		f.TS, f.Nonce = 0, [miap.NonceSize]byte{}
		if err := e.Sign(f); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyIMI500(b *testing.B) {
	e, _ := miap.New(miap.Config{Keys: testKeys(b)})
	f := &miap.Frame{Purpose: miap.PurposeIMI, Party: "web", Body: imi500}
	e.Sign(f)
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Verify(f, miap.PurposeIMI); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMintID(b *testing.B) {
	e, _ := miap.New(miap.Config{Keys: testKeys(b), Now: func() time.Time { return t0 }})
	cack := bytes.Repeat([]byte{1}, 32)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := e.MintID(imi500, cack); err != nil {
			b.Fatal(err)
		}
	}
}
