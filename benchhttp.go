package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/uims/uims/internal/bench"
)

// cmdBenchHTTP is `uims bench http`: the web API of a running `uims run`
// driven from outside by concurrent clients, beside a trivial server of
// the same API shape, then a check that every accepted message was
// delivered (issue 19; docs/BENCHMARKS.md, "From outside (HTTP)"). It
// fails when an accepted message was not delivered.
func cmdBenchHTTP(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("uims bench http", flag.ExitOnError)
	var cfg bench.HTTPConfig
	fs.StringVar(&cfg.URL, "url", env("UIMS_WEB_URL", "http://127.0.0.1:8080"), "the web gateway of a running uims run (UIMS_WEB_URL)")
	tokens := fs.String("tokens", "alice-token:bob", "senders as token:recipient, comma-separated; client i uses the (i mod n)th")
	fs.IntVar(&cfg.Clients, "clients", 64, "concurrent clients, each with its own keep-alive connection")
	size := fs.String("size", "100", "text length (100, 10k, 1m)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured time per server")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "warm-up per server (its messages are checked, not measured)")
	fs.DurationVar(&cfg.CheckTimeout, "check-timeout", time.Minute, "longest wait for every accepted message to be delivered")
	fs.IntVar(&cfg.CheckParallel, "check-parallel", 16, "status requests in flight during the delivery check")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "process id of uims run, to report its CPU time per message (0: not measured)")
	fs.StringVar(&cfg.OutDir, "out", "bench-http", "folder for results.json and results.md; empty: none")
	parseArgs(fs, args)
	var err error
	if cfg.Senders, err = bench.ParseHTTPSenders(*tokens); err != nil {
		return err
	}
	if cfg.Size, err = bench.ParseSize(*size); err != nil {
		return err
	}
	cfg.Progress = os.Stdout
	rep, err := bench.RunHTTP(ctx, cfg, append([]string{"uims", "bench", "http"}, args...))
	if err != nil {
		return err
	}
	if cfg.OutDir != "" {
		fmt.Printf("\nwrote %s/results.{json,md}\n", cfg.OutDir)
	}
	for _, r := range rep.Rows {
		if c := r.Check; c != nil && c.Delivered != c.Accepted {
			return fmt.Errorf("%d of %d accepted messages not delivered", c.Accepted-c.Delivered, c.Accepted)
		}
	}
	return nil
}
