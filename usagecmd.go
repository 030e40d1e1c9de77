package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/uims/uims/schemas"
)

// cmdUsage prints clients' usage per medium and UTC day and their daily
// quotas, as the brokers count them from the accounting records
// (docs/ACCOUNTING.md; PROTOCOL.md §6.17). It asks as the command-line
// party, as uims send does; without a client named, it lists the clients
// through the administrator's identity (uims profile list) and asks for
// each.
func cmdUsage(ctx context.Context, args []string) error {
	o := newOpts("usage")
	o.client()
	days := o.fs.Int("days", 1, "UTC days to show, today first (1 to 31)")
	clients := o.parse(args)
	if *days < 1 || *days > schemas.MaxUsageDays {
		return fmt.Errorf("--days %d: want 1 to %d", *days, schemas.MaxUsageDays)
	}
	if len(clients) == 0 {
		nc, err := o.connect("admin")
		if err != nil {
			return fmt.Errorf("no client named, and the client list needs the administrator's identity: %w (usage: uims usage [--days N] [CLIENT...])", err)
		}
		ps, err := (&brokerAdmin{nc: nc, timeout: 10 * time.Second}).list(ctx)
		nc.Close()
		if err != nil {
			return err
		}
		for _, p := range ps {
			clients = append(clients, p.ID)
		}
		if len(clients) == 0 {
			return errors.New("no clients")
		}
	}
	k, done, err := o.cliKit()
	if err != nil {
		return err
	}
	defer done()
	var us []*schemas.UsageReply
	for _, c := range clients {
		u, err := k.Usage(ctx, schemas.UsageQuery{Kind: schemas.ClientByID, User: c, Days: *days})
		if err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
		us = append(us, u)
	}
	printUsage(stdout, us)
	return nil
}

// printUsage writes a table of usage: a row per client, day and medium
// (a day without any, "-"), then each client's quota.
func printUsage(w io.Writer, us []*schemas.UsageReply) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "CLIENT\tDAY (UTC)\tMEDIUM\tSENT\tFAILED\tRECEIVED\tSENT BYTES\tRECEIVED BYTES\t")
	for _, u := range us {
		for _, d := range u.Days {
			media := make([]string, 0, len(d.Media))
			for m := range d.Media {
				media = append(media, m)
			}
			sort.Strings(media)
			if len(media) == 0 {
				fmt.Fprintf(tw, "%s\t%s\t-\t0\t0\t0\t0\t0\t\n", u.Client, d.Day)
			}
			for _, m := range media {
				x := d.Media[m]
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t\n", u.Client, d.Day, m, x.Sent, x.Failed, x.Received, x.SentBytes, x.ReceivedBytes)
			}
			if len(media) > 1 {
				x := d.Total()
				fmt.Fprintf(tw, "%s\t%s\tall\t%d\t%d\t%d\t%d\t%d\t\n", u.Client, d.Day, x.Sent, x.Failed, x.Received, x.SentBytes, x.ReceivedBytes)
			}
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, u := range us {
		fmt.Fprintf(w, "%s: %s\n", u.Client, quotaLine(u.Quota))
	}
}

// quotaLine says a quota in words.
func quotaLine(q schemas.Quota) string {
	if q.Limit == 0 {
		return "no daily quota"
	}
	s := fmt.Sprintf("quota %d messages a day: %d accepted today, %d left", q.Limit, q.Used, q.Left)
	if q.Warned {
		s += " (warned at " + strconv.Itoa(schemas.QuotaWarnPercent) + " %)"
	}
	return s + "; the count starts again " + time.UnixMilli(q.Resets).UTC().Format("2006-01-02 15:04 MST")
}
