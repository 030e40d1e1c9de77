// Command uims runs the Unified Instant Messaging System: the whole fabric
// in one process (uims run) or one role per process (uims broker, uims
// gateway <medium>, uims processor, uims ops), and the tools around it (send,
// profile, keys, bench). Configuration comes from flags and UIMS_*
// environment variables; see README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

var commands = []struct {
	name, help string
	run        func(ctx context.Context, args []string) error
}{
	{"run", "run the whole fabric in this process (embedded NATS, store, broker, processor, gateways)", cmdRun},
	{"nats", "run a NATS server with JetStream, alone or as a cluster member (for scripts/topology.sh)", cmdNATS},
	{"broker", "run a broker replica against NATS and Redis", cmdBroker},
	{"gateway", "run one gateway (web | email | sms | fax) against NATS", cmdGateway},
	{"fax", "HylaFAX's hook: hand a received fax to the fax gateway (received FILE DEVID COMMID ERRMSG [CIDNUMBER ...]; docs/FAX.md)", cmdFax},
	{"processor", "run a message processor against NATS", cmdProcessor},
	{"xmpp", "run the XMPP bridge: a component of an XMPP server, on the fabric with its party bundle (docs/XMPP.md)", cmdXMPP},
	{"ops", "run the operator view: the whole fabric from trace events and heartbeats (docs/OPS.md)", cmdOps},
	{"bot", "run a bot with the SDK: the example (example --bundle DIR), or send one message as a bot (send --bundle DIR --to X TEXT)", cmdBot},
	{"send", "send a message as a client and print its id and final status", cmdSend},
	{"cancel", "cancel a message 'uims send' sent that the brokers still hold (scheduled, quiet hours)", cmdCancel},
	{"usage", "print clients' messages per medium and UTC day and their quotas (usage [--days N] [CLIENT...]; docs/ACCOUNTING.md)", cmdUsage},
	{"audit", "check the brokers' signed audit trail (verify [--since T] | show ID | keys; PROTOCOL.md §15)", cmdAudit},
	{"profile", "list, load or delete client profiles (list | put FILE | delete ID)", cmdProfile},
	{"party", "add, list or remove a party: its MIAP key and NATS identity in one step (add NAME --role gateway --medium M | list | remove NAME | sync)", cmdParty},
	{"keys", "generate, show, export or rotate MIAP keys (generate | show | export PARTY | rotate PARTY)", cmdKeys},
	{"bench", "measure throughput, latency and broker cost against the bare NATS flow and store-and-forward; bench http: a running uims run's web API from outside (docs/BENCHMARKS.md)", cmdBench},
	{"version", "print the version", func(context.Context, []string) error { fmt.Println("uims", version); return nil }},
}

// defaultGCPercent is the garbage collector's target unless GOGC is set.
// The fabric's heap is small (tens of MB) and its garbage is per message,
// so collecting at 4 × the live heap instead of 2 × trades little memory for
// about a tenth of the CPU at load (docs/BENCHMARKS.md, "GC").
const defaultGCPercent = 400

func setGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: uims <command> [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", c.name, c.help)
	}
	fmt.Fprintln(os.Stderr, "\nRun 'uims <command> -h' for the flags of a command.")
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	setGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands {
		if c.name == os.Args[1] {
			if err := c.run(ctx, os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, "uims "+c.name+":", err)
				os.Exit(1)
			}
			return
		}
	}
	usage()
	os.Exit(2)
}
