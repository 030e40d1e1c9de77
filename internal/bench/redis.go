package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/uims/uims/internal/redisproc"
)

// RedisServer is a redis-server started by the load generator on a free
// loopback port, without persistence.
type RedisServer = redisproc.Server

// StartRedis starts redis-server (found on PATH) with its working folder dir.
func StartRedis(dir string) (*RedisServer, error) {
	s, err := redisproc.Start(dir)
	if err != nil {
		return nil, fmt.Errorf("bench: %w; or pass --redis URL", err)
	}
	return s, nil
}

// procCPU returns the user+system CPU time of process pid from
// /proc/<pid>/stat, or -1 when it cannot be read.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// The command name (field 2) may hold spaces; fields after ")" are fixed.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return -1
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck
}

// machineBusy returns the CPU time all processes of the machine spent
// (user, nice, system, irq, softirq, steal) from /proc/stat, or -1.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return -1
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return -1
		}
		busy += v
	}
	const clkTck = 100
	return time.Duration(busy) * time.Second / clkTck
}

// diskWrites returns the bytes this process caused to be written to
// storage (/proc/self/io write_bytes), or -1.
func diskWrites() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}
