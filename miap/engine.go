package miap

import (
	"crypto/rand"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/uims/uims/schemas"
)

// Freshness defaults and bounds (§7.1).
const (
	DefaultWindow = 120 * time.Second
	MaxWindow     = 300 * time.Second
	DefaultSkew   = 30 * time.Second
)

// MaxRouted is the largest routed IMI (§10): the IMI plus the broker's additions.
const MaxRouted = schemas.MaxIMI + 4<<10

// MaxNotify is the largest notification body (§10): a status event that
// reroutes a message carries an IMI′ in base64url (§6.15), its earlier
// attempts and the IMI's meta besides.
const MaxNotify = 48 << 10

// Config configures an Engine. Only Keys is required.
type Config struct {
	// Keys holds the master keys this process may use: a gateway holds its
	// own K1 keys, a broker holds every K1 and K2 (§3.3).
	Keys *Keyring
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Rand is the source of nonces and session keys; default crypto/rand.
	Rand io.Reader
	// Window is how old a frame may be; default 120 s, at most 300 s.
	Window time.Duration
	// Skew is how far ahead of this clock a frame may be; default 30 s,
	// at most Window.
	Skew time.Duration
}

// Engine signs and verifies MIAP frames. It holds no per-message state and
// is safe for concurrent use.
type Engine struct {
	keys   atomic.Pointer[Keyring]
	now    func() time.Time
	rand   io.Reader
	window int64 // ms
	skew   int64 // ms
	// watermark: gateway → broker frames stamped at or before it are refused
	// (§7.4). Unix ms; 0 when not in quarantine.
	watermark atomic.Int64
}

// New returns an Engine for cfg.
func New(cfg Config) (*Engine, error) {
	if cfg.Keys == nil {
		return nil, fmt.Errorf("%w: no keyring", ErrNoKey)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Window < time.Second || cfg.Window > MaxWindow {
		return nil, fmt.Errorf("miap: window %v outside 1s..%v", cfg.Window, MaxWindow)
	}
	if cfg.Skew == 0 {
		cfg.Skew = min(DefaultSkew, cfg.Window)
	}
	if cfg.Skew < 0 || cfg.Skew > cfg.Window {
		return nil, fmt.Errorf("miap: skew %v outside 0..window", cfg.Skew)
	}
	e := &Engine{now: cfg.Now, rand: cfg.Rand,
		window: cfg.Window.Milliseconds(), skew: cfg.Skew.Milliseconds()}
	e.keys.Store(cfg.Keys)
	return e, nil
}

// Now returns the engine's clock reading in Unix ms.
func (e *Engine) Now() int64 { return e.now().UnixMilli() }

// Window returns the freshness window.
func (e *Engine) Window() time.Duration { return time.Duration(e.window) * time.Millisecond }

// Skew returns the allowed clock skew.
func (e *Engine) Skew() time.Duration { return time.Duration(e.skew) * time.Millisecond }

// NonceTTL is how long a nonce must be remembered: 2 × window + skew (§7.2).
func (e *Engine) NonceTTL() time.Duration {
	return time.Duration(2*e.window+e.skew) * time.Millisecond
}

// Keys returns the engine's keyring.
func (e *Engine) Keys() *Keyring { return e.keys.Load() }

// SetKeys replaces the keyring: keys added, rotated or removed while the
// process runs (§3.4). Frames being verified finish under the keyring they
// started with.
func (e *Engine) SetKeys(kr *Keyring) {
	if kr != nil {
		e.keys.Store(kr)
	}
}

// NewNonce returns a fresh random nonce.
func (e *Engine) NewNonce() (n [NonceSize]byte, err error) {
	if _, err = io.ReadFull(e.rand, n[:]); err != nil {
		err = fmt.Errorf("miap: nonce: %w", err)
	}
	return n, err
}

// NewSessionKey returns a fresh random 32-byte session key C_ack (§6.1).
func (e *Engine) NewSessionKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := io.ReadFull(e.rand, k); err != nil {
		return nil, fmt.Errorf("miap: session key: %w", err)
	}
	return k, nil
}

// Sign completes f and sets its MAC: the current key id of f.Party, the
// time (if f.TS is 0) and a fresh nonce (if the nonce is all zero and the
// purpose needs one, §6).
func (e *Engine) Sign(f *Frame) error {
	if !f.Purpose.Valid() || f.Purpose == PurposeID {
		return fmt.Errorf("%w: cannot sign purpose %d", ErrWrongPurpose, f.Purpose)
	}
	now := e.now()
	k := e.keys.Load().current(f.Party, now)
	if k == nil || k.sub[f.Purpose] == nil {
		return fmt.Errorf("%w for party %q", ErrNoKey, f.Party)
	}
	f.Kid = k.kid
	if f.TS == 0 {
		f.TS = now.UnixMilli()
	}
	if needsNonce(f.Purpose) && f.Nonce == ([NonceSize]byte{}) {
		n, err := e.NewNonce()
		if err != nil {
			return err
		}
		f.Nonce = n
	}
	f.MAC = computeMAC(f.MAC[:0], k.sub[f.Purpose], f)
	return nil
}

// needsNonce reports whether frames of purpose p carry a fresh nonce: every
// gateway → broker frame (checked against the nonce store) and the
// broker's unsolicited notifications (de-duplicated by the receiver).
func needsNonce(p Purpose) bool {
	return p.Direction() == GatewayToBroker || p == PurposeNotify || p == PurposeGwSession
}

// maxBody is the largest body a frame of purpose p may carry (§10).
func maxBody(p Purpose) int {
	switch p {
	case PurposeIMI:
		return schemas.MaxIMI
	case PurposeRoute, PurposeTicket:
		return MaxRouted
	case PurposeNotify:
		return MaxNotify
	}
	return schemas.MaxControl
}

// Verify checks a frame received as purpose want, in the order of §8:
// purpose, size and nonce, time, key id, MAC. It does not consult the nonce store;
// Guard.Check does both.
func (e *Engine) Verify(f *Frame, want Purpose) error {
	if f.Purpose != want || !want.Valid() || want == PurposeID {
		return fmt.Errorf("%w: got %q, want %q", ErrWrongPurpose, f.Purpose, want)
	}
	if len(f.Body) > maxBody(want) {
		return fmt.Errorf("%w: body %d bytes, limit %d", ErrTooLarge, len(f.Body), maxBody(want))
	}
	if len(f.MAC) != MACSize {
		return fmt.Errorf("%w: MAC length %d", ErrMalformed, len(f.MAC))
	}
	if want.Direction() == GatewayToBroker && f.Nonce == ([NonceSize]byte{}) {
		// Every gateway → broker frame carries a fresh nonce (§7.2); an
		// absent one is 16 zero bytes (§4.2), which no sender draws.
		return fmt.Errorf("%w: %s frame without a nonce", ErrMalformed, want)
	}
	now := e.now()
	if err := e.checkTime(f, now.UnixMilli()); err != nil {
		return err
	}
	k := e.keys.Load().lookup(f.Party, f.Kid, now)
	if k == nil || k.sub[want] == nil {
		return fmt.Errorf("%w: party %q kid %q", ErrUnknownKey, f.Party, f.Kid)
	}
	if !checkMAC(k.sub[want], f) {
		return fmt.Errorf("%w: %s frame of %q", ErrBadMAC, want, f.Party)
	}
	return nil
}

// VerifySigned checks a frame's key and MAC but not its age: for a receipt
// the originator stored for itself after checking it fresh (§6.9).
func (e *Engine) VerifySigned(f *Frame, want Purpose) error {
	if f.Purpose != want || !want.Valid() || want == PurposeID {
		return fmt.Errorf("%w: got %q, want %q", ErrWrongPurpose, f.Purpose, want)
	}
	if len(f.Body) > maxBody(want) || len(f.MAC) != MACSize {
		return fmt.Errorf("%w: size", ErrMalformed)
	}
	k := e.keys.Load().lookup(f.Party, f.Kid, e.now())
	if k == nil || k.sub[want] == nil {
		return fmt.Errorf("%w: party %q kid %q", ErrUnknownKey, f.Party, f.Kid)
	}
	if !checkMAC(k.sub[want], f) {
		return fmt.Errorf("%w: %s frame of %q", ErrBadMAC, want, f.Party)
	}
	return nil
}

func (e *Engine) checkTime(f *Frame, now int64) error {
	if f.TS > now+e.skew {
		return &SkewError{ServerTime: now, FrameTime: f.TS}
	}
	switch f.Purpose {
	case PurposeTicket:
		if f.Expiry < now {
			return fmt.Errorf("%w: ticket expired %d ms ago", ErrExpired, now-f.Expiry)
		}
		return nil
	case PurposeNotify:
		// Notifications wait in a stream until the originator takes them;
		// age is no reason to refuse them (§6.9).
		return nil
	}
	if f.TS < now-e.window {
		return fmt.Errorf("%w: %d ms old", ErrStale, now-f.TS)
	}
	if f.Purpose.Direction() == GatewayToBroker {
		if wm := e.watermark.Load(); wm != 0 && f.TS <= wm {
			return fmt.Errorf("%w: stamped %d, refusing until %d", ErrQuarantine, f.TS, wm)
		}
	}
	return nil
}

// Quarantine refuses every gateway → broker frame stamped at or before
// lostAt + skew: exactly the frames a lost nonce store could have seen (§7.4).
func (e *Engine) Quarantine(lostAt time.Time) {
	wm := lostAt.UnixMilli() + e.skew
	for {
		old := e.watermark.Load()
		if old >= wm || e.watermark.CompareAndSwap(old, wm) {
			return
		}
	}
}

// QuarantineUntil returns the end of the quarantine, or zero.
func (e *Engine) QuarantineUntil() time.Time {
	if wm := e.watermark.Load(); wm != 0 {
		return time.UnixMilli(wm)
	}
	return time.Time{}
}

// MintID computes the inner digest ID = HMAC(K2, IMI' ‖ C_ack) under the
// current broker key (§6.3). It returns the ID and the K2 key id, which the
// broker stores with the transaction.
func (e *Engine) MintID(routed, session []byte) (id []byte, kid string, err error) {
	k := e.keys.Load().current(BrokerParty, e.now())
	if k == nil {
		return nil, "", fmt.Errorf("%w: no broker key K2", ErrNoKey)
	}
	f := Frame{Purpose: PurposeID, Kid: k.kid, Session: session, Body: routed}
	return computeMAC(make([]byte, 0, MACSize), k.sub[PurposeID], &f), k.kid, nil
}

// CheckID recomputes the ID under K2 key kid and compares it with id in
// constant time (§6.8).
func (e *Engine) CheckID(kid string, routed, session, id []byte) error {
	k := e.keys.Load().lookupK2(kid)
	if k == nil {
		return fmt.Errorf("%w: broker kid %q", ErrUnknownKey, kid)
	}
	f := Frame{Purpose: PurposeID, Kid: kid, Session: session, Body: routed, MAC: id}
	if !checkMAC(k.sub[PurposeID], &f) {
		return ErrIDMismatch
	}
	return nil
}
