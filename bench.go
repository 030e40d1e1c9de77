package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/uims/uims/internal/bench"
	"github.com/uims/uims/miap"
)

// cmdBench is `uims bench`: the load generator and the reference flows
// (issue 7; docs/BENCHMARKS.md). `uims bench child` is the broker side it
// starts in a process of its own; `uims bench report results.json` writes
// the tables and the plot of a finished run again; `uims bench http`
// drives the web API of a running `uims run` from outside.
func cmdBench(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "child" {
		return bench.RunChild(ctx, args[1:])
	}
	if len(args) > 0 && args[0] == "http" {
		return cmdBenchHTTP(ctx, args[1:]) // benchhttp.go
	}
	if len(args) > 0 && args[0] == "report" {
		// uims bench report results.json [dir]: the tables and the plot again.
		if len(args) < 2 {
			return errors.New("usage: uims bench report results.json [out-dir]")
		}
		rep, err := bench.ReadReport(args[1])
		if err != nil {
			return err
		}
		dir := filepath.Dir(args[1])
		if len(args) > 2 {
			dir = args[2]
		}
		return rep.WriteFiles(dir)
	}
	fs := flag.NewFlagSet("uims bench", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: uims bench [flags]            the fabric in this process, with the reference flows\n"+
			"       uims bench http [flags]       the web API of a running uims run, from outside (uims bench http -h)\n"+
			"       uims bench report results.json [out-dir]\n\nflags:")
		fs.PrintDefaults()
	}
	var cfg bench.Config
	sizes := fs.String("sizes", "100,10k,100k,1m", "content sizes")
	senders := fs.String("senders", "1,16,64,256", "numbers of concurrent senders")
	modes := fs.String("modes", "fast,strict", "MIAP modes of the real flow")
	flows := fs.String("flows", "kit,bare,sf,js,redis", "flows: kit (the real one), bare (NATS ceiling), sf (store-and-forward), js (JetStream inbox writes), redis (round trips), brokers (the broker tier alone: IMI + ack, no gateways, with --brokers processes)")
	brokers := fs.String("brokers", "1,2,4", "numbers of broker processes of the brokers flow")
	fs.StringVar(&cfg.Pin, "pin", "", "CPU list (taskset -c) of the broker processes, e.g. 1; the load generator with NATS and the gateways then runs on the other CPUs (--pin-rest), Redis with it (--pin-redis)")
	fs.StringVar(&cfg.PinRest, "pin-rest", "", "with --pin: CPU list of the load generator's process (NATS server, gateways, senders); default the CPUs --pin leaves")
	fs.StringVar(&cfg.PinRedis, "pin-redis", "", "with --pin: CPU list of redis-server; default --pin-rest's")
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "measured time per cell")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "warm-up time per cell")
	fs.StringVar(&cfg.NATSURL, "nats", "", "NATS URL with JetStream; empty: embedded, as uims run starts it")
	fs.StringVar(&cfg.RedisURL, "redis", "", "Redis URL; empty: start redis-server on a free loopback port")
	brokerWhere := fs.String("broker", "proc", "where the broker side runs: proc (a child process: its CPU is measured) or inproc")
	fs.StringVar(&cfg.DataDir, "data", "", "folder for the JetStream store, keys and Redis; empty: a temporary folder")
	fs.BoolVar(&cfg.NoAuth, "no-auth", false, "embedded NATS without authentication (uims run requires it: every part connects as its party)")
	fs.StringVar(&cfg.Sync, "sync", "always", "embedded JetStream sync: always (as uims run) or default")
	fs.BoolVar(&cfg.NoTrace, "no-trace", false, "turn off the protocol-step trace events (on in uims run)")
	audit := fs.String("audit", env("UIMS_AUDIT", "on"), "the brokers' audit trail, on (as uims run) or off (PROTOCOL.md §15)")
	seal := fs.String("seal", "auto", "kit flow: content sealed from hop to hop, auto (on: the gateways have encryption keys) or off (PROTOCOL.md §14)")
	fs.IntVar(&cfg.InboxShards, "inbox-shards", 0, "streams of the web inbox (0: the web gateway's default, 8)")
	fs.IntVar(&cfg.ContentRef, "content-ref", 0, "kit flow: content of this many bytes or more goes by reference through the object store (0: the default, 262144, as uims run)")
	fs.BoolVar(&cfg.InboxEachWrite, "inbox-each-write", false, "inbox streams (web and store-and-forward) fsync each write instead of group commit")
	fs.StringVar(&cfg.Profile, "profile", "kit/fast/100B/64,kit/fast/1MB/64", "cells to profile with pprof, comma-separated flow/mode/size/senders; empty: none")
	fs.IntVar(&cfg.MinMsgs, "min-msgs", 200, "measure each cell until at least this many messages completed (up to --max-duration)")
	fs.DurationVar(&cfg.MaxDuration, "max-duration", 30*time.Second, "longest measurement (and warm-up) of a cell")
	fs.Float64Var(&cfg.PacedRate, "paced-rate", 25, "after the matrix, rate-matched cells at every size at this offered rate (msg/s); 0: none")
	fs.IntVar(&cfg.PacedSenders, "paced-senders", 16, "senders of the rate-matched cells")
	fs.StringVar(&cfg.OutDir, "out", "bench-out", "folder for results.json, results.csv, results.md, plot.svg and profiles")
	fs.StringVar(&cfg.LogLevel, "log-level", "warn", "log level of the fabric")
	fs.DurationVar(&cfg.WaitIdle, "wait-idle", 0, "before each cell, wait up to this long for other processes to leave the CPUs (a shared machine)")
	fs.Float64Var(&cfg.IdleBelow, "idle-below", 0.3, "with --wait-idle: the other processes' load, in cores, that counts as idle")
	bare := fs.String("bare-sizes", "", "bare flow body sizes: imi-request,imi-reply,ack-request,ack-reply (default: like the real flow)")
	quick := fs.Bool("quick", false, "a short run (seconds, for make bench): kit, bare and sf flows, 100 B and 100 KB, 1 and 64 senders, fast mode, 0.3 s per cell")
	parseArgs(fs, args)
	if *quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["sizes"] {
			*sizes = "100,100k"
		}
		if !set["senders"] {
			*senders = "1,64"
		}
		if !set["modes"] {
			*modes = "fast"
		}
		if !set["flows"] {
			*flows = "kit,bare,sf"
		}
		if !set["duration"] {
			cfg.Duration = 300 * time.Millisecond
		}
		if !set["warmup"] {
			cfg.Warmup = 100 * time.Millisecond
		}
		if !set["min-msgs"] {
			cfg.MinMsgs = 20
		}
		if !set["profile"] {
			cfg.Profile = ""
		}
		if !set["paced-rate"] {
			cfg.PacedRate = 0
		}
	}
	cfg.NoAudit = *audit == "off"
	m, err := miap.ParseSealMode(*seal)
	if err != nil || m == miap.SealRequired {
		return fmt.Errorf("seal %q (auto or off)", *seal)
	}
	cfg.Seal = m
	for _, s := range benchList(*sizes) {
		n, err := bench.ParseSize(s)
		if err != nil {
			return err
		}
		cfg.Sizes = append(cfg.Sizes, n)
	}
	for _, s := range benchList(*senders) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return fmt.Errorf("senders %q", s)
		}
		cfg.Senders = append(cfg.Senders, n)
	}
	for _, m := range benchList(*modes) {
		if m != "fast" && m != "strict" {
			return fmt.Errorf("mode %q (fast or strict)", m)
		}
		cfg.Modes = append(cfg.Modes, m)
	}
	for _, f := range benchList(*flows) {
		switch f {
		case bench.FlowKit, bench.FlowBare, bench.FlowSF, bench.FlowJS, bench.FlowRedis, bench.FlowBrokers:
		default:
			return fmt.Errorf("flow %q (kit, bare, sf, js, redis, brokers)", f)
		}
		cfg.Flows = append(cfg.Flows, f)
	}
	for _, s := range benchList(*brokers) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return fmt.Errorf("brokers %q", s)
		}
		cfg.Brokers = append(cfg.Brokers, n)
	}
	if *bare != "" {
		var v []int
		for _, s := range benchList(*bare) {
			n, err := strconv.Atoi(s)
			if err != nil {
				return fmt.Errorf("bare-sizes %q", *bare)
			}
			v = append(v, n)
		}
		if len(v) != 4 {
			return errors.New("bare-sizes needs 4 numbers")
		}
		cfg.Bare = bench.BareSizes{IMIRequest: v[0], IMIReply: v[1], AckRequest: v[2], AckReply: v[3]}
	}
	switch *brokerWhere {
	case "proc":
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		cfg.BrokerArgv = []string{exe, "bench", "child"}
	case "inproc":
	default:
		return fmt.Errorf("broker %q (proc or inproc)", *brokerWhere)
	}
	cfg.Progress = os.Stdout
	rep, err := bench.Run(ctx, cfg, append([]string{"uims", "bench"}, args...))
	if rep != nil && len(rep.Targets) > 0 {
		fmt.Println("\ntargets (issue 7 §3, fast mode):")
		for _, t := range rep.Targets {
			met := "not measured"
			if t.Met != nil {
				met = map[bool]string{true: "MET", false: "NOT MET"}[*t.Met]
			}
			fmt.Printf("  %-22s %-13s %s — want %s\n", t.Name, met, t.Measured, t.Want)
		}
		for _, p := range rep.Profiles {
			fmt.Printf("\nprofile %s (%s), %.1f s of samples; by component:\n", p.File, p.Label, p.TotalSeconds)
			for _, c := range p.Components {
				fmt.Printf("  %5.1f%%  %s\n", c.Share*100, c.Name)
			}
			fmt.Println("  top functions (flat, cum):")
			for i, f := range p.Top {
				if i == 12 {
					break
				}
				fmt.Printf("  %5.1f%% %5.1f%%  %s\n", f.Flat*100, f.Cum*100, f.Name)
			}
		}
		if cfg.OutDir != "" {
			fmt.Printf("\nwrote %s/results.{json,csv,md} and %s/plot.svg\n", cfg.OutDir, cfg.OutDir)
		}
	}
	return err
}

func benchList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
