#!/usr/bin/env python3
"""An independent implementation of MIAP sealed content, written from
PROTOCOL.md §14 (and the nkeys encoding it names), no Go code consulted, that
checks seal_vectors.json byte for byte (§14.7): the nkeys curve seeds and
public keys (§14.2), the sealer's secret S, the CEK and the sealed bytes
(§14.3), the wrap W and Miap-Seal-Key (§14.4, reproduced from the vector's
nonce), the opening of a transfer (§14.5), and the expected refusal of every
negative vector.

AES-256-GCM, HMAC and X25519 come from python3's `cryptography` package
(Debian python3-cryptography); NaCl crypto_box (HSalsa20, XSalsa20,
Poly1305) is implemented here in pure Python.

Usage: check_seal_vectors.py seal_vectors.json
"""
import base64, hashlib, hmac, json, re, struct, sys

try:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from cryptography.exceptions import InvalidTag
except ImportError as e:  # the Go test checks the import first and skips with a reason
    sys.exit("check_seal_vectors.py: python3 module 'cryptography' missing (Debian: python3-cryptography): %s" % e)


class Refused(Exception):
    """A transfer refused with a MIAP code (§9)."""

    def __init__(self, code, why):
        super().__init__("%s: %s" % (code, why))
        self.code = code


def check(cond, what):
    if not cond:
        raise AssertionError(what)


# ---- nkeys encoding (§14.2) ------------------------------------------------

PREFIX_SEED = 18 << 3   # 'S'
PREFIX_CURVE = 23 << 3  # 'X'


def crc16(data):
    """CRC-16/XMODEM: polynomial 0x1021, initial value 0, no reflection."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def b32decode_nopad(s):
    check(re.fullmatch(r"[A-Z2-7]+", s) is not None, "nkey not base32: %r" % s)
    return base64.b32decode(s + "=" * (-len(s) % 8))


def b32encode_nopad(b):
    return base64.b32encode(b).decode().rstrip("=")


def nkey_unframe(s):
    raw = b32decode_nopad(s)
    check(len(raw) >= 4, "nkey too short")
    body, crc = raw[:-2], struct.unpack("<H", raw[-2:])[0]
    check(crc16(body) == crc, "nkey CRC-16 wrong: %r" % s)
    return body


def decode_curve_public(s):
    """X…: base32(0xB8 ‖ 32-byte X25519 public key ‖ CRC-16 LE), 56 characters."""
    body = nkey_unframe(s)
    check(len(body) == 33 and body[0] == PREFIX_CURVE, "not a public curve key: %r" % s)
    return body[1:]


def seed_prefix():
    # two prefix bytes: the seed type's 5 bits, then the curve type's 8 bits, then 3 zero bits
    return bytes([PREFIX_SEED | (PREFIX_CURVE >> 5), (PREFIX_CURVE & 31) << 3])


def decode_curve_seed(s):
    """SX…: base32(0x95 0xC0 ‖ 32-byte seed ‖ CRC-16 LE), 58 characters."""
    body = nkey_unframe(s)
    check(len(body) == 34 and body[:2] == seed_prefix(), "not a curve seed: %r" % s[:2])
    return body[2:]


def encode_curve_public(pub):
    body = bytes([PREFIX_CURVE]) + pub
    return b32encode_nopad(body + struct.pack("<H", crc16(body)))


def encode_curve_seed(seed):
    body = seed_prefix() + seed
    return b32encode_nopad(body + struct.pack("<H", crc16(body)))


def x25519_public(seed):
    # the private key is the raw seed, clamped as RFC 7748 says
    return X25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def x25519(seed, pub):
    return X25519PrivateKey.from_private_bytes(seed).exchange(X25519PublicKey.from_public_bytes(pub))


# ---- base64url (§4.2: RFC 4648 §5, no padding, canonical) -------------------

def b64url_decode(s):
    if re.fullmatch(r"[A-Za-z0-9_-]*", s) is None or len(s) % 4 == 1:
        raise ValueError("not base64url")
    b = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    if b64url_encode(b) != s:
        raise ValueError("non-zero trailing bits")
    return b


def b64url_encode(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


# ---- NaCl crypto_box: X25519 + HSalsa20 + XSalsa20-Poly1305 -----------------

SIGMA = b"expand 32-byte k"
M32 = 0xFFFFFFFF


def _rotl(v, n):
    return ((v << n) | (v >> (32 - n))) & M32


def _salsa_rounds(x):
    def qr(a, b, c, d):
        x[b] ^= _rotl((x[a] + x[d]) & M32, 7)
        x[c] ^= _rotl((x[b] + x[a]) & M32, 9)
        x[d] ^= _rotl((x[c] + x[b]) & M32, 13)
        x[a] ^= _rotl((x[d] + x[c]) & M32, 18)
    for _ in range(10):
        qr(0, 4, 8, 12); qr(5, 9, 13, 1); qr(10, 14, 2, 6); qr(15, 3, 7, 11)    # columns
        qr(0, 1, 2, 3); qr(5, 6, 7, 4); qr(10, 11, 8, 9); qr(15, 12, 13, 14)    # rows


def _salsa_state(key, inp16):
    c = struct.unpack("<4I", SIGMA)
    k = struct.unpack("<8I", key)
    i = struct.unpack("<4I", inp16)
    return [c[0], k[0], k[1], k[2], k[3], c[1], i[0], i[1], i[2], i[3], c[2], k[4], k[5], k[6], k[7], c[3]]


def hsalsa20(key, inp16):
    x = _salsa_state(key, inp16)
    _salsa_rounds(x)
    return struct.pack("<8I", *(x[j] for j in (0, 5, 10, 15, 6, 7, 8, 9)))


def salsa20_stream(key, nonce8, n):
    out = b""
    ctr = 0
    while len(out) < n:
        s = _salsa_state(key, nonce8 + struct.pack("<Q", ctr))
        x = list(s)
        _salsa_rounds(x)
        out += struct.pack("<16I", *((x[j] + s[j]) & M32 for j in range(16)))
        ctr += 1
    return out[:n]


def poly1305(key, msg):
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:], "little")
    p = (1 << 130) - 5
    acc = 0
    for i in range(0, len(msg), 16):
        block = msg[i:i + 16] + b"\x01"
        acc = (acc + int.from_bytes(block, "little")) * r % p
    return ((acc + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def secretbox(key, nonce24, msg):
    """XSalsa20-Poly1305: tag (16 bytes) ‖ ciphertext."""
    stream = salsa20_stream(hsalsa20(key, nonce24[:16]), nonce24[16:], 32 + len(msg))
    c = bytes(a ^ b for a, b in zip(msg, stream[32:]))
    return poly1305(stream[:32], c) + c


def secretbox_open(key, nonce24, box):
    if len(box) < 16:
        return None
    tag, c = box[:16], box[16:]
    stream = salsa20_stream(hsalsa20(key, nonce24[:16]), nonce24[16:], 32 + len(c))
    if not hmac.compare_digest(poly1305(stream[:32], c), tag):
        return None
    return bytes(a ^ b for a, b in zip(c, stream[32:]))


def box_key(seed, pub):
    return hsalsa20(x25519(seed, pub), b"\0" * 16)


def xkeys_seal(msg, sender_seed, recipient_pub, nonce24):
    """§14.4: "xkv1" ‖ nonce ‖ crypto_box(msg)."""
    return b"xkv1" + nonce24 + secretbox(box_key(sender_seed, recipient_pub), nonce24, msg)


def xkeys_open(data, recipient_seed, sender_pub):
    if len(data) <= 28 or data[:4] != b"xkv1":
        return None
    try:
        k = box_key(recipient_seed, sender_pub)
    except ValueError:  # an all-zero shared secret (a low-order point)
        return None
    return secretbox_open(k, data[4:28], data[28:])


# ---- §14.3 sealed bytes ----------------------------------------------------

def sealer_secret(seed):
    return hmac.new(seed, b"uims seal secret", hashlib.sha256).digest()


def derive_cek(s, msg_id, plaintext):
    return hmac.new(s, b"uims seal cek" + msg_id.encode() + hashlib.sha256(plaintext).digest(), hashlib.sha256).digest()


AAD = b"uims-seal/1"


def seal(cek, plaintext):
    return b"\x01" + AESGCM(cek).encrypt(b"\0" * 12, plaintext, AAD)


# ---- §14.5 opening ---------------------------------------------------------

def open_transfer(keys, seal_key, seal_from, ticket_id, ticket_csha, sealed):
    """The receiver's steps 2-5 of §14.5 (the transfer's ticket already
    checked against the sealed bytes, §6.6). keys: the receiver's valid seeds."""
    try:
        spub = decode_curve_public(seal_from)
    except AssertionError as e:
        raise Refused("MALFORMED", "Miap-Seal-From: %s" % e)
    try:
        wrap = b64url_decode(seal_key)
    except ValueError as e:
        raise Refused("MALFORMED", "Miap-Seal-Key: %s" % e)
    if len(wrap) > 140:
        raise Refused("MALFORMED", "Miap-Seal-Key over 140 bytes")
    w = None
    for seed in keys:
        w = xkeys_open(wrap, seed, spub)
        if w is not None:
            break
    if w is None or len(w) != 96:
        raise Refused("BAD_SEAL", "the wrap does not open to 96 bytes")
    cek, wid, wsum = w[:32], w[32:64], w[64:]
    if wid != ticket_id or wsum != ticket_csha:
        raise Refused("BAD_SEAL", "the wrap names another ID or digest")
    if sealed[:1] != b"\x01":
        raise Refused("BAD_SEAL", "sealed bytes of another version")
    try:
        return AESGCM(cek).decrypt(b"\0" * 12, sealed[1:], AAD)
    except InvalidTag:
        raise Refused("BAD_SEAL", "the sealed bytes do not open")


def expect_refused(code, name, *args):
    try:
        open_transfer(*args)
    except Refused as e:
        check(e.code == code, "%s: %s, want %s" % (name, e, code))
        return
    raise AssertionError("%s: opened, want %s" % (name, code))


def self_test():
    # Poly1305: RFC 8439 §2.5.2.
    key = bytes.fromhex("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b")
    check(poly1305(key, b"Cryptographic Forum Research Group").hex() == "a8061dc1305136c6c22b8baf0c0127a9", "poly1305 RFC 8439")
    # HSalsa20: the first test of Bernstein's "Cryptography in NaCl" §8 (the box key of
    # Alice's secret key and Bob's public key, from their shared secret).
    shared = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    check(hsalsa20(shared, b"\0" * 16).hex() == "1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389", "hsalsa20 NaCl")


def main(path):
    self_test()
    v = json.load(open(path))
    h = bytes.fromhex
    checked = 0

    # §14.2: the keys, in the nkeys encoding, "made from 32 bytes 0x01 and 0x02" (§14.7).
    sseed, rseed = decode_curve_seed(v["sealer_xkey_seed"]), decode_curve_seed(v["recipient_xkey_seed"])
    check(sseed == b"\x01" * 32 and rseed == b"\x02" * 32, "seeds are not 32 bytes 0x01 and 0x02")
    check(encode_curve_seed(sseed) == v["sealer_xkey_seed"] and encode_curve_seed(rseed) == v["recipient_xkey_seed"], "seed encoding")
    check(len(v["sealer_xkey_public"]) == 56 and len(v["recipient_xkey_public"]) == 56, "public keys not of 56 characters")
    spub, rpub = decode_curve_public(v["sealer_xkey_public"]), decode_curve_public(v["recipient_xkey_public"])
    check(spub == x25519_public(sseed), "sealer public key")
    check(rpub == x25519_public(rseed), "recipient public key")
    check(encode_curve_public(spub) == v["sealer_xkey_public"] and encode_curve_public(rpub) == v["recipient_xkey_public"], "public key encoding")
    checked += 4

    # §14.3: S, the CEK, the sealed bytes.
    s = sealer_secret(sseed)
    check(s.hex() == v["sealer_secret"], "S")
    msg_id, plaintext = v["msg_id"], v["plaintext"].encode()
    check(re.fullmatch(r"[0-9a-f]{32}", msg_id) is not None, "msg_id not 32 hex digits")
    check(hashlib.sha256(plaintext).hexdigest() == v["plaintext_sha256"], "plaintext SHA-256")
    cek = derive_cek(s, msg_id, plaintext)
    check(cek.hex() == v["cek"], "CEK")
    sealed = seal(cek, plaintext)
    check(sealed.hex() == v["sealed"], "sealed bytes")
    check(len(sealed) == len(plaintext) + 17, "sealed length")
    csha = hashlib.sha256(sealed).digest()
    check(csha.hex() == v["sealed_sha256"], "sealed SHA-256")
    checked += 4

    # §14.4: W and the wrap, reproduced with the vector's nonce.
    tid, nonce = h(v["id"]), h(v["wrap_nonce"])
    check(len(tid) == 32 and nonce == b"\x03" * 24, "ID or wrap nonce")
    w = cek + tid + csha
    check(len(w) == 96 and w.hex() == v["wrap_plaintext"], "W")
    wrap = xkeys_seal(w, sseed, rpub, nonce)
    check(len(wrap) == 140, "wrap not of 140 bytes")
    check(b64url_encode(wrap) == v["wrap"], "Miap-Seal-Key")
    check(b64url_decode(v["wrap"]) == wrap, "Miap-Seal-Key decoding")
    # The wrap opens with the recipient's seed from the sealer's public key to W;
    # the same shared key either way (crypto_box is symmetric in the pair).
    check(xkeys_open(b64url_decode(v["wrap"]), rseed, spub) == w, "the wrap does not open to W")
    checked += 3

    # §14.5: the recipient opens the transfer.
    got = open_transfer([rseed], v["wrap"], v["sealer_xkey_public"], tid, csha, sealed)
    check(got == plaintext, "the transfer opens to %r" % got)
    checked += 1

    # The file's negative vectors: the sealed bytes replaced (the ticket binds
    # their own digest, so §6.6 passes them to §14.5), or the ticket's ID replaced.
    check(len(v["negative"]) >= 2, "fewer than 2 negative vectors")
    for n in v["negative"]:
        nsealed = h(n["sealed"]) if n.get("sealed") else sealed
        nid = h(n["id"]) if n.get("id") else tid
        nwrap = n.get("wrap") or v["wrap"]
        check(nsealed != sealed or nid != tid or nwrap != v["wrap"], "%s changes nothing" % n["name"])
        expect_refused(n["code"], n["name"], [rseed], nwrap, v["sealer_xkey_public"], nid, hashlib.sha256(nsealed).digest(), nsealed)
        checked += 1

    # Further refusals of §14.5, made here from the positive vector.
    bad = bytearray(wrap); bad[-1] ^= 1
    expect_refused("BAD_SEAL", "a wrap byte changed", [rseed], b64url_encode(bytes(bad)), v["sealer_xkey_public"], tid, csha, sealed)
    expect_refused("BAD_SEAL", "the wrap opened with another key", [sseed], v["wrap"], v["sealer_xkey_public"], tid, csha, sealed)
    expect_refused("BAD_SEAL", "the wrap from another sender", [rseed], v["wrap"], v["recipient_xkey_public"], tid, csha, sealed)
    expect_refused("BAD_SEAL", "sealed bytes of version 2", [rseed], b64url_encode(xkeys_seal(w[:64] + hashlib.sha256(b"\x02" + sealed[1:]).digest(), sseed, rpub, nonce)),
                   v["sealer_xkey_public"], tid, hashlib.sha256(b"\x02" + sealed[1:]).digest(), b"\x02" + sealed[1:])
    expect_refused("MALFORMED", "Miap-Seal-From a seed", [rseed], v["wrap"], v["sealer_xkey_seed"], tid, csha, sealed)
    expect_refused("MALFORMED", "Miap-Seal-Key padded", [rseed], v["wrap"] + "=", v["sealer_xkey_public"], tid, csha, sealed)
    expect_refused("MALFORMED", "Miap-Seal-Key over 140 bytes", [rseed], b64url_encode(wrap + b"\0"), v["sealer_xkey_public"], tid, csha, sealed)
    checked += 7
    # Opening with several valid keys: the receiver tries each (§14.2).
    check(open_transfer([b"\x07" * 32, rseed], v["wrap"], v["sealer_xkey_public"], tid, csha, sealed) == plaintext, "opening with a second key")
    checked += 1

    print("check_seal_vectors.py: %d checks of seal_vectors.json agree with PROTOCOL.md §14" % checked)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        main(sys.argv[1])
    except (AssertionError, Refused) as e:
        sys.exit("check_seal_vectors.py: MISMATCH: %s" % e)
