package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/audit"
	"github.com/uims/uims/broker"
	"github.com/uims/uims/miap"
)

// errAuditFindings makes uims exit non-zero when verification found
// something.
var errAuditFindings = errors.New("audit: the trail does not verify")

// cmdAudit reads the brokers' audit trail (PROTOCOL.md §15):
//
//	uims audit verify [--since T] [--keys FILE | --pub FILE] [--slack D] [--redis URL] [--json]
//	uims audit show ID [--since T]
//	uims audit keys            the public audit keys, for --pub
//
// It reads the stream as the operator (the "ops" identity, an observer) or
// as the administrator, and verifies with the brokers' public audit keys,
// derived from the key file's K2 entries or read from a --pub file. verify
// also checks the stream against the brokers' anchors in their store
// (--redis, PROTOCOL.md §15.5), which alone show a deleted tail or a
// deleted stream.
func cmdAudit(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: uims audit verify [--since T] | show ID | keys")
	}
	sub, args := args[0], args[1:]
	o := newOpts("audit " + sub)
	o.client()
	since := o.fs.String("since", "", "only the records stored at or after this time: RFC 3339, or a duration back from now (24h)")
	pubFile := o.fs.String("pub", "", "file of public audit keys, one 'kid base64url' a line (uims audit keys); default: derived from the key file")
	slack := o.fs.Duration("slack", 5*time.Minute, "a chain whose next decision is overdue by more than this misses its tail; 0: do not check")
	asJSON := o.fs.Bool("json", false, "print the report as JSON")
	who := o.fs.String("as", "ops", "the NATS identity to read the stream as: ops (an observer) or admin")
	redisURL := o.fs.String("redis", env("UIMS_REDIS_URL", ""), "the brokers' Redis (as uims broker --redis), whose audit anchors show a stream or its last batches deleted; empty: not checked (UIMS_REDIS_URL)")
	rest := o.parse(args)
	keys, err := auditKeys(o, *pubFile)
	if err != nil {
		return err
	}
	if sub == "keys" {
		for _, kid := range miap.AuditKids(keys) {
			fmt.Fprintf(stdout, "%s %s\n", kid, base64.RawURLEncoding.EncodeToString(keys[kid]))
		}
		return nil
	}
	from, err := parseSince(*since, time.Now())
	if err != nil {
		return err
	}
	v := &audit.Verifier{Keys: keys, Now: time.Now(), Slack: *slack}
	switch sub {
	case "verify":
		if len(rest) != 0 {
			return errors.New("usage: uims audit verify [--since T]")
		}
	case "show":
		if len(rest) != 1 {
			return errors.New("usage: uims audit show <message id>")
		}
		v.Only = rest[0]
	default:
		return fmt.Errorf("uims audit %s: want verify, show or keys", sub)
	}
	// the anchors before the stream: each then names a batch stored before
	// the read ends, so that a batch the read could not see is not missing
	badAnchors := false
	if sub == "verify" {
		if v.Anchors, err = readAnchors(ctx, *redisURL); errors.Is(err, audit.ErrFormat) {
			fmt.Fprintln(stderr, "uims audit verify: anchors that do not parse (edited in the store?):", err)
			badAnchors = true
		} else if err != nil {
			return err
		}
	}
	nc, err := o.connect(*who)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	rep, err := audit.Verify(ctx, js, v, from)
	if err != nil {
		return err
	}
	if sub == "show" {
		tx := rep.Tx(rest[0])
		if *asJSON {
			return json.NewEncoder(stdout).Encode(tx)
		}
		printAuditTx(stdout, &tx)
		if len(tx.Records) == 0 {
			return fmt.Errorf("no audit records of %s", rest[0])
		}
		if len(tx.Findings) > 0 {
			return errAuditFindings
		}
		return nil
	}
	if *asJSON {
		json.NewEncoder(stdout).Encode(rep)
	} else {
		printAuditReport(stdout, rep, v.Anchors != nil)
	}
	if !rep.OK() || badAnchors {
		return errAuditFindings
	}
	return nil
}

// readAnchors reads the brokers' audit anchors from the Redis at url (the
// URL forms of uims broker --redis). Without a URL there are none, and
// verify says once what it cannot see then.
func readAnchors(ctx context.Context, url string) (map[string]audit.Anchor, error) {
	if url == "" {
		fmt.Fprintln(stderr, "uims audit verify: no --redis (UIMS_REDIS_URL): the brokers' anchors are not checked, so the last batches of a broker, or the whole stream, deleted go unseen")
		return nil, nil
	}
	rdb, err := broker.OpenRedis(url)
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return broker.AuditAnchors(ctx, rdb)
}

// auditKeys returns the public audit keys: from a --pub file, or derived
// from the key file's K2 entries.
func auditKeys(o *opts, pubFile string) (map[string]ed25519.PublicKey, error) {
	if pubFile == "" {
		kr, err := o.keyring(miap.BrokerParty)
		if err != nil {
			return nil, fmt.Errorf("the brokers' public audit keys: %w (or --pub FILE)", err)
		}
		return kr.AuditPublicKeys(), nil
	}
	f, err := os.Open(pubFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readPubKeys(f)
}

// readPubKeys reads "kid base64url" lines; blank lines and # comments are
// skipped.
func readPubKeys(r io.Reader) (map[string]ed25519.PublicKey, error) {
	out := make(map[string]ed25519.PublicKey)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kid, b64, ok := strings.Cut(line, " ")
		pub, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(b64))
		if !ok || err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("public key line %q: want 'kid base64url'", line)
		}
		out[kid] = ed25519.PublicKey(pub)
	}
	return out, sc.Err()
}

// parseSince reads --since: RFC 3339, or a duration back from now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want RFC 3339 or a duration", s)
}

// printAuditReport prints a verification's report; anchored says the
// brokers' anchors were checked.
func printAuditReport(w io.Writer, rep *audit.Report, anchored bool) {
	fmt.Fprintf(w, "%d batches, %d records, %d transactions\n", rep.Batches, rep.Records, rep.Txs)
	if anchored {
		boots := "boots"
		if rep.AnchorsChecked == 1 {
			boots = "boot"
		}
		fmt.Fprintf(w, "%d broker %s checked against their anchors in the store", rep.AnchorsChecked, boots)
		if rep.AnchorsUnchecked > 0 {
			fmt.Fprintf(w, " (%d not: anchored before --since or past the retention)", rep.AnchorsUnchecked)
		}
		fmt.Fprintln(w)
	}
	for _, f := range rep.Findings {
		fmt.Fprintln(w, f.String())
	}
	if rep.OK() {
		fmt.Fprintln(w, "verified: no record missing, altered or out of order")
	} else {
		fmt.Fprintf(w, "%d findings\n", len(rep.Findings))
	}
}

func printAuditTx(w io.Writer, tx *audit.TxResult) {
	fmt.Fprintf(w, "audit of %s: %s\n", tx.Tx, tx.Summary())
	for _, r := range tx.Records {
		b := r.Body
		what := b.Kind
		for _, kv := range [][2]string{{"attempt", itoa(b.Attempt)}, {"og", b.OG}, {"gateway", b.Gateway}, {"medium", b.Medium},
			{"chain", strings.Join(b.Chain, ",")}, {"status", b.Status}, {"code", b.Code}, {"id", b.IDMatch}, {"next", b.Next}} {
			if kv[1] != "" && kv[1] != "0" {
				what += " " + kv[0] + "=" + kv[1]
			}
		}
		sig := "signed"
		if !r.Signed {
			sig = "SIGNATURE BAD"
		}
		fmt.Fprintf(w, "%3d  %s  %-8s %s  [%s by %s, kid %s, seq %d, hash %s]\n", r.N, time.UnixMilli(b.At).UTC().Format("2006-01-02T15:04:05.000Z"),
			b.Broker, what, sig, r.Broker, r.Kid, r.StreamSeq, r.Hash[:12])
	}
	for _, f := range tx.Findings {
		fmt.Fprintln(w, "  ", f.String())
	}
}

func itoa(n int) string { return fmt.Sprint(n) }
