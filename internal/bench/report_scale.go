package bench

import (
	"fmt"
	"strings"
)

// brokersMarkdown writes the brokers flow's table (brokers.go): the broker
// tier alone, by number of broker processes.
func (rep *Report) brokersMarkdown(b *strings.Builder) {
	var rs []*Result
	for _, r := range rep.Results {
		if r.Flow == FlowBrokers {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return
	}
	b.WriteString("\n### The broker tier alone (brokers flow: IMI + acknowledgement, no gateways, no content)\n\n")
	b.WriteString("One message is an IMI request and its acknowledgement, signed by the web gateway's MIAP client; msg/s counts the pairs. " +
		"Per broker process: its cores, the requests it served (micro service stats) and its CPU per message it served.\n\n")
	b.WriteString("| broker processes | senders | msg/s | × 1 process | p50 ms | p90 ms | p99 ms | errors | broker CPU µs/msg, all processes (net) | per process: cores · requests · µs/msg | generator CPU µs/msg | Redis CPU µs/msg | cores: brokers / generator / Redis / others | busy per CPU |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n")
	for _, r := range rs {
		x := ""
		for _, one := range rs {
			if one.Brokers == 1 && one.Senders == r.Senders && one.Rate > 0 {
				x = fmt.Sprintf("%.2f", r.Rate/one.Rate)
			}
		}
		bcpu := num(r.BrokerCPU, 0)
		if r.BrokerCPUNet >= 0 {
			bcpu += " (" + num(r.BrokerCPUNet, 0) + ")"
		}
		fmt.Fprintf(b, "| %d | %d | %.0f | %s | %.2f | %.2f | %.2f | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Brokers, r.Senders, r.Rate, x, r.P50, r.P90, r.P99, errText(r), bcpu, procsText(r.BrokerProcs),
			num(r.GenCPU, 0), num(r.RedisCPU, 0), coresText(r), busyText(r.CPUBusy))
	}
}

// tiersMarkdown writes, for a pinned run, where each cell's CPU went: the
// tier whose CPUs are full is the one that limits.
func (rep *Report) tiersMarkdown(b *strings.Builder) {
	if rep.Config.Pin == "" {
		return
	}
	fmt.Fprintf(b, "\n### Where the CPU went (pinned: %s)\n\n", rep.Config.Pin)
	b.WriteString("| flow | size | senders | msg/s | cores: brokers / generator / Redis / others | busy per CPU |\n|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Results {
		name := flowName(r)
		if r.Paced > 0 {
			name += fmt.Sprintf(" @%g msg/s", r.Paced)
		}
		fmt.Fprintf(b, "| %s | %s | %d | %.0f | %s | %s |\n", name, SizeName(r.Size), r.Senders, r.Rate, coresText(r), busyText(r.CPUBusy))
	}
}

func procsText(ps []BrokerProc) string {
	if len(ps) == 0 {
		return "-"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprintf("%.2f · %s · %s", p.Cores, num(float64(p.Requests), 0), num(p.CPU, 0))
	}
	return strings.Join(s, "; ")
}

func coresText(r *Result) string {
	return fmt.Sprintf("%s / %s / %s / %s", num(r.BrokerCores, 2), num(r.GenCores, 2), num(r.RedisCores, 2), num(r.OtherLoad, 2))
}

// busyText prints each CPU's busy share, "cpu0 0.98 · cpu1 0.41".
func busyText(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("cpu%d %.2f", i, x)
	}
	return strings.Join(s, " · ")
}
