package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/uims/uims/internal/system"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/bundle"
	"github.com/uims/uims/miap/natsauth"
)

// media is a repeatable --medium flag.
type media []string

func (m *media) String() string     { return strings.Join(*m, ",") }
func (m *media) Set(v string) error { *m = append(*m, v); return nil }

// reserved are the party names of the built-in identities, which `uims run`
// and `uims nats` provision themselves.
func reserved(name string) bool {
	return slices.ContainsFunc(system.Builtin, func(id system.Identity) bool { return id.Name == name })
}

// cmdParty adds, lists and removes the parties of a fabric: each has a MIAP
// key and a NATS identity (docs/SECURITY.md). It works on the fabric's
// folder (--data: auth/, creds/, keys.json, as `uims run` or `uims nats`
// write them) and tells the running fabric at --nats, as its administrator.
func cmdParty(ctx context.Context, args []string) error {
	o := newOpts("party")
	o.keyFlags()
	o.fs.StringVar(&o.natsURL, "nats", env("UIMS_NATS_URL", "nats://127.0.0.1:4222"), "NATS URL of the running fabric (UIMS_NATS_URL)")
	o.fs.StringVar(&o.tlsCA, "tls-ca", env("UIMS_TLS_CA", ""), "PEM CA bundle to verify the NATS server with (UIMS_TLS_CA)")
	role := o.fs.String("role", "gateway", "add: gateway | processor | observer")
	var ms media
	o.fs.Var(&ms, "medium", "add: a medium the party speaks for (repeat for more)")
	out := o.fs.String("out", "", "add: the bundle's folder (default ./<name>-bundle)")
	public := o.fs.String("public-nats", "", "add: the NATS URL written in the bundle (default --nats)")
	rest := o.parse(args)
	usage := errors.New("usage: uims party add NAME --role gateway|processor|observer --medium M [--medium M2] [--out DIR] | list | remove NAME | sync")
	if len(rest) == 0 {
		return usage
	}
	log := o.logger()
	au, err := system.OpenAuth(o.data)
	if err != nil {
		return err
	}
	switch {
	case rest[0] == "add" && len(rest) == 2:
		name := rest[1]
		if !miap.ValidName(name) || name == miap.BrokerParty || reserved(name) {
			return fmt.Errorf("party name %q: 1 to 64 of a-z 0-9 - _, and not a built-in party", name)
		}
		r := natsauth.Role(*role)
		switch r {
		case natsauth.RoleGateway:
			if len(ms) == 0 {
				return errors.New("a gateway speaks for at least one medium: --medium M")
			}
		case natsauth.RoleProcessor, natsauth.RoleObserver:
		default:
			return fmt.Errorf("role %q: gateway, processor or observer", *role)
		}
		for _, m := range ms {
			if !miap.ValidName(m) {
				return fmt.Errorf("medium %q: a-z 0-9 - _", m)
			}
		}
		if _, ok := au.Identity(name); ok {
			return fmt.Errorf("party %q exists: 'uims party remove %s' first, or 'uims keys rotate %s'", name, name, name)
		}
		kf, err := miap.ReadKeyFile(o.keyFile())
		if err != nil {
			return fmt.Errorf("%w (is %s the folder of a fabric that uims run or uims nats made? --data)", err, o.data)
		}
		if r != natsauth.RoleObserver { // the observer signs nothing
			if len(kf.For(name).Keys) > 0 {
				return fmt.Errorf("party %q has keys in %s already", name, o.keyFile())
			}
			e, err := miap.NewKeyEntry(rand.Reader, name, miap.NewKid(name, time.Now()), time.Time{})
			if err != nil {
				return err
			}
			e.Role, e.Media = string(r), ms
			kf.Keys = append(kf.Keys, e)
			if err := miap.WriteKeyFile(o.keyFile(), kf); err != nil {
				return err
			}
		}
		creds, err := au.Creds(system.Identity{Name: name, Role: r, Media: ms})
		if err != nil {
			return err
		}
		if *out == "" {
			*out = name + "-bundle"
		}
		url := *public
		if url == "" {
			url = o.natsURL
		}
		prefix := natsauth.InboxPrefix(name)
		if r == natsauth.RoleObserver {
			prefix = "_INBOX"
		}
		if err := bundle.Write(*out, bundle.Meta{Party: name, Role: string(r), Media: ms, NATSURL: url, InboxPrefix: prefix},
			kf.For(name), creds); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "party %s (%s", name, r)
		if len(ms) > 0 {
			fmt.Fprintf(stdout, ", media %s", strings.Join(ms, ","))
		}
		fmt.Fprintf(stdout, ") added; its bundle is in %s: bundle.json, keys.json (its MIAP key and its encryption key alone), %s.creds (its NATS identity)\n", *out, name)
		if err := o.publish(ctx, kf); err != nil {
			log.Warn().Err(err).Msg("the running fabric was not told; 'uims party sync' when it runs (uims run publishes the keys at start)")
		} else {
			fmt.Fprintln(stdout, "the brokers know its key now; no restart needed")
		}
		if r == natsauth.RoleGateway {
			fmt.Fprintf(stdout, "give a client an address on %s (uims profile put), then run it: uims bot example --bundle %s, or your own with the SDK (docs/GATEWAYS.md)\n", ms[0], *out)
		}
		return nil
	case rest[0] == "list" && len(rest) == 1:
		kf, _ := miap.ReadKeyFile(o.keyFile())
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "PARTY\tROLE\tMEDIA\tKEYS\tNATS USER\tISSUED")
		for _, id := range au.Identities() {
			var kids []string
			if kf != nil {
				for _, e := range kf.For(id.Name).Keys {
					kids = append(kids, e.Kid)
				}
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", id.Name, id.Role, strings.Join(id.Media, ","), strings.Join(kids, ","),
				id.User[:12]+"…", id.Issued.Format(time.RFC3339))
		}
		return w.Flush()
	case rest[0] == "remove" && len(rest) == 2:
		name := rest[1]
		if name == "admin" || name == miap.BrokerParty {
			return fmt.Errorf("party %q cannot be removed", name)
		}
		if err := au.Revoke(name); err != nil {
			return err
		}
		os.Remove(au.CredsFile(name))
		kf, err := miap.ReadKeyFile(o.keyFile())
		if err != nil {
			return err
		}
		kf.Keys = slices.DeleteFunc(kf.Keys, func(e miap.KeyEntry) bool { return e.Party == name })
		if err := miap.WriteKeyFile(o.keyFile(), kf); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "party %s removed: its NATS user is revoked and its keys deleted\n", name)
		if err := o.sync(ctx, au, kf); err != nil {
			log.Warn().Err(err).Msg("the running fabric was not told; 'uims party sync' when it runs")
			return nil
		}
		fmt.Fprintln(stdout, "the fabric closed its connections and refuses its frames from now on")
		return nil
	case rest[0] == "sync" && len(rest) == 1:
		kf, err := miap.ReadKeyFile(o.keyFile())
		if err != nil {
			return err
		}
		if err := o.sync(ctx, au, kf); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "the fabric has the key file's keys and the authority's revocations")
		return nil
	}
	return usage
}

// publish writes kf to the running fabric's key registry as the administrator.
func (o *opts) publish(ctx context.Context, kf *miap.KeyFile) error {
	admin, err := o.connect("admin")
	if err != nil {
		return err
	}
	defer admin.Close()
	return system.PublishKeyFile(ctx, admin, kf)
}

// sync tells the running fabric the authority's account (its revocations)
// and the key file's keys.
func (o *opts) sync(ctx context.Context, au *system.Auth, kf *miap.KeyFile) error {
	tlsOpts, err := system.NATSClientTLS(o.tlsCA)
	if err != nil {
		return err
	}
	if err := au.PushAccount(o.natsURL, tlsOpts...); err != nil {
		return err
	}
	return o.publish(ctx, kf)
}
