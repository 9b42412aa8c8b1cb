//go:build unix

package api

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time this process has used (user and system), for
// benchmarks on a shared machine where wall-clock time mostly measures
// the neighbours.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
