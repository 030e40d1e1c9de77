package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/uims/uims/gateways/fax"
	"github.com/uims/uims/gateways/fax/faxaddr"
)

// cmdFax is HylaFAX's side of the fax gateway: `uims fax received FILE
// DEVID COMMID ERRMSG [CIDNUMBER [CIDNAME ...]]`, the arguments HylaFAX
// gives its bin/faxrcvd (faxrcvd(8)), hands the received TIFF to the fax
// gateway's hook (docs/FAX.md, "Set-up with HylaFAX"). It exits non-zero
// when the gateway did not take the fax; HylaFAX keeps the file in recvq.
func cmdFax(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "received" {
		return errors.New("usage: uims fax received [flags] FILE DEVID COMMID ERRMSG [CIDNUMBER ...]")
	}
	fs := flag.NewFlagSet("fax received", flag.ContinueOnError)
	url := fs.String("url", env("UIMS_FAX_HOOK_URL", "http://127.0.0.1:4580/fax/received"), "the fax gateway's hook URL (UIMS_FAX_HOOK_URL)")
	tokenFile := fs.String("token-file", env("UIMS_FAX_HOOK_TOKEN_FILE", ""), "file holding the hook token; default UIMS_FAX_HOOK_TOKEN")
	to := fs.String("to", env("UIMS_FAX_RECEIVE_TO", ""), "recipient of received faxes: client id or number (UIMS_FAX_RECEIVE_TO)")
	from := fs.String("from", "", "the sender's number; default CIDNUMBER")
	timeout := fs.Duration("timeout", 60*time.Second, "how long to wait for the gateway")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) < 4 {
		return errors.New("uims fax received: want FILE DEVID COMMID ERRMSG [CIDNUMBER ...] (faxrcvd's arguments)")
	}
	file, commID, errMsg := rest[0], rest[2], rest[3]
	if *from == "" && len(rest) > 4 {
		*from = rest[4]
	}
	number, err := faxaddr.Number(strings.TrimSpace(*from))
	if err != nil {
		return fmt.Errorf("uims fax received: the caller's number %q is not E.164 (+digits); pass --from: %w", *from, err)
	}
	if *to == "" {
		return errors.New("uims fax received: no recipient: set --to or UIMS_FAX_RECEIVE_TO")
	}
	token := os.Getenv("UIMS_FAX_HOOK_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("uims fax received: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return errors.New("uims fax received: no hook token: set --token-file or UIMS_FAX_HOOK_TOKEN")
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("uims fax received: %w", err)
	}
	defer f.Close()
	if errMsg != "" {
		fmt.Fprintf(os.Stderr, "uims fax received: HylaFAX reports a reception error for %s: %s (handing over the pages received)\n", file, errMsg)
	}
	rep, err := fax.PostReceived(&http.Client{Timeout: *timeout}, *url, token, number, *to, commID, f)
	if err != nil {
		return err
	}
	fmt.Printf("%s %s (fax from %s to %s)\n", rep.MsgID, rep.Status, number, *to)
	return nil
}
