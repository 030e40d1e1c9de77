package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/uims/uims/internal/system"
	"github.com/uims/uims/miap"
)

// stdout is where the tool commands (keys, profile) print; tests replace it.
var stdout io.Writer = os.Stdout

// stderr is where they warn; tests replace it too.
var stderr io.Writer = os.Stderr

func cmdKeys(ctx context.Context, args []string) error {
	o := newOpts("keys")
	o.keyFlags()
	o.fs.StringVar(&o.natsURL, "nats", env("UIMS_NATS_URL", "nats://127.0.0.1:4222"), "NATS URL of the running fabric, told of rotations (UIMS_NATS_URL)")
	o.fs.StringVar(&o.tlsCA, "tls-ca", env("UIMS_TLS_CA", ""), "PEM CA bundle to verify the NATS server with (UIMS_TLS_CA)")
	out := o.fs.String("out", "", "output file (export)")
	overlap := o.fs.Duration("overlap", 24*time.Hour, "how long the old key stays valid after a rotation (PROTOCOL.md §3.4)")
	rest := o.parse(args)
	if len(rest) == 0 {
		return errors.New("usage: uims keys generate | show | export PARTY --out FILE | rotate PARTY")
	}
	file := o.keyFile()
	log := o.logger()
	switch rest[0] {
	case "generate":
		_, err := system.LoadOrCreateKeys(file, append(system.Parties, rest[1:]...), log)
		return err
	case "show":
		kf, err := miap.ReadKeyFile(file)
		if err != nil {
			return err
		}
		for _, e := range kf.Keys {
			xkey := "-"
			if e.XKey != "" {
				xkey, _ = miap.XKeyPublic(e.XKey) // the public key only (PROTOCOL.md §14.2)
			}
			fmt.Fprintf(stdout, "%-8s %-24s not_before=%s not_after=%s xkey=%s\n", e.Party, e.Kid, fmtTime(e.NotBefore), fmtTime(e.NotAfter), xkey)
		}
		return nil
	case "export":
		if len(rest) != 2 || *out == "" {
			return errors.New("usage: uims keys export PARTY --out FILE")
		}
		kf, err := miap.ReadKeyFile(file)
		if err != nil {
			return err
		}
		sub := kf.For(rest[1])
		if len(sub.Keys) == 0 {
			return fmt.Errorf("no keys for party %q", rest[1])
		}
		return miap.WriteKeyFile(*out, sub)
	case "rotate":
		if len(rest) != 2 {
			return errors.New("usage: uims keys rotate PARTY [--overlap 24h]")
		}
		party := rest[1]
		if !miap.ValidName(party) {
			return fmt.Errorf("invalid party %q (lowercase letters, digits, '-', '_')", party)
		}
		kf, err := miap.ReadKeyFile(file)
		if err != nil {
			return err
		}
		// The new key signs from RotationLead on: by then every broker and
		// gateway has it from the key registry (PROTOCOL.md §3.4).
		e, first, overlapping, err := rotate(kf, party, time.Now().UTC().Add(system.RotationLead), *overlap)
		if err != nil {
			return err
		}
		if err := miap.WriteKeyFile(file, kf); err != nil {
			return err
		}
		switch {
		case first:
			fmt.Fprintf(stdout, "%s had no key: created its first key %s (no role or media: none to carry over)\n", party, e.Kid)
		case overlapping == 0:
			fmt.Fprintf(stdout, "new key %s for %s, used from now (no earlier key was still valid)\n", e.Kid, party)
		case party == miap.BrokerParty:
			fmt.Fprintf(stdout, "new key %s for %s, minting from now; the earlier K2 keys stay to check the IDs minted under them (PROTOCOL.md §3.4)\n", e.Kid, party)
		default:
			fmt.Fprintf(stdout, "new key %s for %s, signing from %s; the earlier key verifies until %s\n", e.Kid, party, fmtTime(e.NotBefore), fmtTime(e.NotBefore.Add(*overlap)))
		}
		where := "uims keys export " + party + " --out FILE for its machines"
		if party == miap.BrokerParty {
			where = "the brokers hold the whole file"
		}
		if err := o.publish(ctx, kf); err != nil {
			fmt.Fprintf(stdout, "the running fabric was not reached (%v): 'uims party sync' when it runs; machines that keep their own copy: %s\n", err, where)
			return nil
		}
		fmt.Fprintf(stdout, "published to the fabric's key registry: brokers and gateways take the new key without a restart, and sign with it from %s\n", fmtTime(e.NotBefore))
		return nil
	}
	return fmt.Errorf("unknown keys command %q", rest[0])
}

// rotate adds a new key for party to kf, valid from now, and ends the
// party's current keys at now + overlap (PROTOCOL.md §3.4): until then
// verifiers accept both, signers use the new one. A party without a key
// gets its first one (first). overlapping counts the earlier keys still
// valid now. The new entry keeps the role and
// media of the party's newest entry that carries them (§3.5), the grant the
// keyring would have read. The broker key K2 keeps no not_after: it must
// stay until every ID minted under it is done (§3.4), and the newest K2
// mints from now on anyway.
func rotate(kf *miap.KeyFile, party string, now time.Time, overlap time.Duration) (e miap.KeyEntry, first bool, overlapping int, err error) {
	var grant *miap.KeyEntry
	kids := map[string]bool{}
	end := now.Add(overlap)
	for i := range kf.Keys {
		k := &kf.Keys[i]
		if k.Party != party {
			continue
		}
		kids[k.Kid] = true
		if (k.Role != "" || len(k.Media) > 0) && (grant == nil || !k.NotBefore.Before(grant.NotBefore)) {
			grant = k
		}
		if !k.NotAfter.IsZero() && !k.NotAfter.After(now) {
			continue // retired already
		}
		overlapping++
		if party != miap.BrokerParty && (k.NotAfter.IsZero() || k.NotAfter.After(end)) {
			k.NotAfter = end // never lengthens an earlier, shorter overlap
		}
	}
	kid := miap.NewKid(party, now)
	for n := 2; kids[kid]; n++ { // two rotations in one second
		kid = fmt.Sprintf("%s-%d", miap.NewKid(party, now), n)
	}
	e, err = miap.NewKeyEntry(rand.Reader, party, kid, now)
	if err != nil {
		return e, false, 0, err
	}
	if grant != nil {
		e.Role, e.Media = grant.Role, append([]string(nil), grant.Media...)
	}
	kf.Keys = append(kf.Keys, e)
	return e, len(kids) == 0, overlapping, nil
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}
