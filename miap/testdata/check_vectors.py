#!/usr/bin/env python3
"""An independent MIAP implementation, written from PROTOCOL.md alone (no Go
code consulted), that checks vectors.json byte for byte: subkeys (§3.2), MAC
inputs (§5.3), compact forms (§5.5), MACs, inner digest IDs (§6.3) and the
expected failure of every negative vector (§8). Python 3 standard library only.

Usage: check_vectors.py vectors.json
"""
import base64, hashlib, hmac, json, struct, sys

PURPOSES = ["", "login", "login-ack", "imi", "route", "route-ack", "gw-session", "ticket", "id",
            "ack", "ack-reply", "receipt", "notify", "conv", "conv-reply", "query", "query-reply", "announce", "cancel"]
G2B, B2G, SELF, INTERNAL = 1, 2, 3, 4
DIRECTION = {"login": G2B, "login-ack": B2G, "imi": G2B, "route": B2G, "route-ack": G2B, "gw-session": SELF,
             "ticket": B2G, "id": INTERNAL, "ack": G2B, "ack-reply": B2G, "receipt": B2G, "notify": B2G,
             "conv": G2B, "conv-reply": B2G, "query": G2B, "query-reply": B2G, "announce": G2B, "cancel": G2B}


def hkdf_sha256(ikm, salt, info, length=32):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def subkey(master, purpose, party, kid):
    p = PURPOSES.index(purpose)
    info = (b"MIAP/1 subkey" + bytes([p, DIRECTION[purpose]]) +
            struct.pack(">H", len(party)) + party.encode() + struct.pack(">H", len(kid)) + kid.encode())
    return hkdf_sha256(master, b"MIAP/1", info)


def field(tag, value):
    return bytes([tag]) + struct.pack(">I", len(value)) + value


def integer(tag, v):
    return field(tag, struct.pack(">q", v))


def mac_input(f):
    h = bytes.fromhex
    p = PURPOSES.index(f["purpose"])
    return (b"MIAP" + bytes([1, p, DIRECTION[f["purpose"]]]) +
            field(1, f["party"].encode()) + field(2, f["kid"].encode()) + integer(3, f["ts"]) +
            field(4, h(f["nonce"])) + field(5, h(f["session"])) + field(6, h(f["id"])) +
            field(7, f["peer"].encode()) + field(8, f["ctype"].encode()) + integer(9, f["clen"]) +
            field(10, h(f["csha"])) + integer(11, f["expiry"]) + field(12, f["body"].encode()))


def main(path):
    v = json.load(open(path))
    masters = {(k["party"], k["kid"]): base64.b64decode(k["secret"]) for k in v["keys"]}
    checked = 0
    for s in v["subkeys"]:
        got = subkey(masters[(s["party"], s["kid"])], s["purpose"], s["party"], s["kid"]).hex()
        assert got == s["subkey"], ("subkey", s)
        checked += 1
    for fv in v["frames"]:
        f = fv["frame"]
        mi = mac_input(f)
        assert mi.hex() == fv["mac_input"], ("mac input", fv["name"])
        assert (mi + field(13, bytes.fromhex(f["mac"]))).hex() == fv["compact"], ("compact", fv["name"])
        key = subkey(masters[(f["party"], f["kid"])], f["purpose"], f["party"], f["kid"])
        assert hmac.compare_digest(hmac.new(key, mi, hashlib.sha256).digest(), bytes.fromhex(f["mac"])), ("mac", fv["name"])
        checked += 1
    for iv in v["ids"]:
        key = subkey(masters[("broker", iv["k2_kid"])], "id", "", iv["k2_kid"])
        f = {"purpose": "id", "party": "", "kid": iv["k2_kid"], "ts": 0, "nonce": "00" * 16, "session": iv["session"],
             "id": "", "peer": "", "ctype": "", "clen": 0, "csha": "", "expiry": 0, "body": iv["routed"]}
        assert hmac.new(key, mac_input(f), hashlib.sha256).hexdigest() == iv["id"], ("id", iv["name"])
        checked += 1
    for nv in v["negative"]:
        f = nv["frame"]
        want = nv["error"]
        if want == "UNKNOWN_KEY":
            assert (f["party"], f["kid"]) not in masters, nv["name"]
        elif want == "STALE":
            assert f["ts"] < v["now"] - v["window_ms"], nv["name"]
        elif want == "CLOCK_SKEW":
            assert f["ts"] > v["now"] + v["skew_ms"], nv["name"]
        elif want == "BAD_MAC":
            key = subkey(masters[(f["party"], f["kid"])], f["purpose"], f["party"], f["kid"])
            assert not hmac.compare_digest(hmac.new(key, mac_input(f), hashlib.sha256).digest(), bytes.fromhex(f["mac"])), nv["name"]
        else:
            raise AssertionError("unknown expected error " + want)
        checked += 1
    print("check_vectors.py: %d vectors agree with PROTOCOL.md" % checked)


if __name__ == "__main__":
    main(sys.argv[1])
