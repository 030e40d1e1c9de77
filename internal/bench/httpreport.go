package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func httpHeaderLine() string {
	return fmt.Sprintf("%-8s %4s %6s %9s %8s %8s %8s %8s %8s %-24s %5s | %8s %8s | %5s %5s",
		"server", "cli", "size", "msg/s", "p50ms", "p90ms", "p99ms", "maxms", "accepted", "errors", "conns",
		"genCPUµs", "srvCPUµs", "cores", "other")
}

// Line is the row as one line of the table's output.
func (r *HTTPResult) Line() string {
	return fmt.Sprintf("%-8s %4d %6s %9.0f %8.2f %8.2f %8.2f %8.1f %8d %-24s %5d | %8s %8s | %5s %5s",
		r.Target, r.Clients, SizeName(r.Size), r.Rate, r.P50, r.P90, r.P99, r.Max, r.Accepted, errorList(r.Errors, "0"), r.Conns,
		num(r.GenCPU, 1), num(r.ServerCPU, 1), num(r.MachineLoad, 2), num(r.OtherLoad, 2))
}

// errorList is "503 BUSY 3, transport: EOF 1", sorted; none when empty.
func errorList(m map[string]int, none string) string {
	if len(m) == 0 {
		return none
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// WriteFiles writes results.json and results.md into dir.
func (rep *HTTPReport) WriteFiles(dir string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(rep.Markdown()), 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// Markdown renders the report as a table for docs/BENCHMARKS.md.
func (rep *HTTPReport) Markdown() string {
	var b strings.Builder
	m, c := rep.Machine, rep.Config
	var to []string
	for _, s := range c.Senders {
		to = append(to, s.To)
	}
	fmt.Fprintf(&b, "Run of %s on %d × %s, %s, %s, build %s. Command: `%s`. Server: `uims run` at %s; clients send to %s; each row %s warm-up, %s measured; GOGC %d.\n\n",
		rep.Started.Format("2006-01-02 15:04 UTC"), m.CPUs, m.Model, m.Go, m.Kernel, rep.Build, strings.Join(rep.Args, " "),
		c.URL, strings.Join(to, ", "), c.Warmup, c.Duration, c.GCPercent)
	for _, w := range rep.Warnings {
		fmt.Fprintf(&b, "**Warning:** %s.\n\n", w)
	}
	b.WriteString("| server | clients | size | msg/s accepted | p50 ms | p90 ms | p99 ms | max ms | errors (HTTP status, code) | delivered / accepted | connections | load generator CPU µs/msg | uims run CPU µs/msg | cores busy: machine / others |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Rows {
		fmt.Fprintf(&b, "| %s | %d | %s | %.0f | %.2f | %.2f | %.2f | %.1f | %s | %s | %d | %s | %s | %s / %s |\n",
			rowName(r), r.Clients, SizeName(r.Size), r.Rate, r.P50, r.P90, r.P99, r.Max, errorList(r.Errors, "0"), deliveredCell(r), r.Conns,
			num(r.GenCPU, 1), num(r.ServerCPU, 1), num(r.MachineLoad, 2), num(r.OtherLoad, 2))
	}
	if rep.Ratio > 0 {
		fmt.Fprintf(&b, "\nuims ÷ trivial: **%.2f ×**.\n", rep.Ratio)
	}
	if u := rep.row(TargetUIMS); u != nil && u.Check != nil {
		rep.checkMarkdown(&b, u)
	}
	return b.String()
}

func rowName(r *HTTPResult) string {
	if r.Target == TargetTrivial {
		return "trivial (in process, 202 and nothing else)"
	}
	return "uims run (" + r.URL + ")"
}

// deliveredCell is "n / n" for a checked row, "-" for the trivial one.
func deliveredCell(r *HTTPResult) string {
	if r.Check == nil {
		return "-"
	}
	return fmt.Sprintf("%d / %d", r.Check.Delivered, r.Check.Accepted)
}

// checkMarkdown says what the delivery check found.
func (rep *HTTPReport) checkMarkdown(b *strings.Builder, u *HTTPResult) {
	c := u.Check
	fmt.Fprintf(b, "\nDelivery check: %d of %d accepted messages (%d measured, %d in the warm-up or after it) delivered or read, %d status requests in %.1f s (at most %s, %d in flight).",
		c.Delivered, c.Accepted, u.Accepted, u.Unmeasured, c.Requests, c.Seconds, rep.Config.CheckTimeout, rep.Config.CheckParallel)
	if len(u.WarmupErrors) > 0 {
		fmt.Fprintf(b, " Warm-up errors: %s.", errorList(u.WarmupErrors, ""))
	}
	b.WriteString("\n")
	if len(c.Undelivered) == 0 {
		return
	}
	b.WriteString("\n| message not delivered | last state or answer |\n|---|---|\n")
	for i, x := range c.Undelivered {
		if i == 100 {
			fmt.Fprintf(b, "| … %d more | results.json |\n", len(c.Undelivered)-i)
			break
		}
		fmt.Fprintf(b, "| `%s` | %s |\n", x.ID, x.State)
	}
}
