package miap

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
)

// Content by reference (§10): above a threshold, a hop's content goes to
// the object store bucket uims_content instead of inline, sealed so that
// only the parties of that transfer can read it, under a name the brokers
// can compute to delete it when the attempt ends.
const (
	// MinContentRef is the smallest content a sender may send by
	// reference: the brokers delete only objects of at least this size.
	MinContentRef = 64 << 10
	// DefaultContentRef is the Go code's default threshold.
	DefaultContentRef = 256 << 10
	// HdrContentEnc names how an object is sealed; EncA256GCM is the one
	// way defined (ContentKey). A transfer by reference without it carries
	// the object in clear (1.2.1 to 1.7).
	HdrContentEnc = "Miap-Content-Enc"
	EncA256GCM    = "A256GCM"
)

// label derives a value of the transfer's ID for one use.
func label(id []byte, use string, extra []byte) []byte {
	m := hmac.New(sha256.New, id)
	m.Write([]byte(use))
	m.Write(extra)
	return m.Sum(nil)
}

// ContentName is the object name of n bytes of content of the transfer
// whose ID is id: hex of the first 16 bytes of HMAC-SHA256(id, "miap
// content name"), "-", n in decimal. It tells nothing of the key; the
// brokers, which mint the ID, compute it to delete the object.
func ContentName(id []byte, n int64) string {
	return hex.EncodeToString(label(id, "miap content name", nil)[:16]) + "-" + strconv.FormatInt(n, 10)
}

// ContentKey is the AES-256-GCM key that seals the content of SHA-256
// csha in the transfer whose ID is id: HMAC-SHA256(id, "miap content
// key" ‖ csha). A key seals one content only, so the nonce is 12 zero
// bytes; a hop that repeats its content under the same ID makes the same
// object.
func ContentKey(id, csha []byte) []byte { return label(id, "miap content key", csha) }

func contentAEAD(id, csha []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(ContentKey(id, csha))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// SealContent seals content for the store: AES-256-GCM with ContentKey,
// the 16-byte tag after the ciphertext.
func SealContent(id, csha, content []byte) ([]byte, error) {
	a, err := contentAEAD(id, csha)
	if err != nil {
		return nil, err
	}
	return a.Seal(make([]byte, 0, len(content)+a.Overhead()), make([]byte, a.NonceSize()), content, nil), nil
}

// OpenContent opens an object sealed by SealContent; an object that does
// not open (another key, a changed byte) is a digest mismatch.
func OpenContent(id, csha, sealed []byte) ([]byte, error) {
	a, err := contentAEAD(id, csha)
	if err != nil {
		return nil, err
	}
	out, err := a.Open(nil, make([]byte, a.NonceSize()), sealed, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: the object does not open with the transfer's key", ErrDigest)
	}
	return out, nil
}
