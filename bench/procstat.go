package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, 100 on
// every Linux architecture Go supports.
const userHZ = 100

// ProcCPU returns the CPU time (user + system, not its children's) process
// pid has used, from /proc/<pid>/stat (Linux only), in USER_HZ ticks
// (10 ms).
func ProcCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(data)
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a
// /proc/<pid>/stat line.
func parseStatCPU(data []byte) (time.Duration, error) {
	ticks, err := statFieldsSum(data, 14, 15)
	if err != nil {
		return 0, err
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// usage is what a process has used: CPU time (user + system) and minor
// page faults, each a page it touched for the first time or again after
// giving it back.
type usage struct {
	cpu    time.Duration
	faults int64
}

// plus adds v to u.
func (u usage) plus(v usage) usage { return usage{cpu: u.cpu + v.cpu, faults: u.faults + v.faults} }

// procUsage reads what process pid has used from one read of
// /proc/<pid>/stat (Linux only): utime and stime (fields 14 and 15, in
// USER_HZ ticks) and minflt (field 10).
func procUsage(pid int) (usage, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, err
	}
	cpu, err := parseStatCPU(data)
	if err != nil {
		return usage{}, err
	}
	faults, err := statFieldsSum(data, 10, 10)
	if err != nil {
		return usage{}, err
	}
	return usage{cpu: cpu, faults: faults}, nil
}

// statFieldsSum adds the counters from field first to field last (from 1,
// as proc(5) numbers them) of a /proc/<pid>/stat line. The command name
// (field 2) is in parentheses and may hold spaces and parentheses itself,
// so fields are counted after its last ')'.
func statFieldsSum(data []byte, first, last int) (int64, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat line without a command name: %.40q", data)
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state).
	if len(f) < last-2 {
		return 0, fmt.Errorf("/proc stat line has %d fields after the command name, want at least %d", len(f), last-2)
	}
	var sum int64
	for _, s := range f[first-3 : last-2] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("/proc stat line: %q is not a count", s)
		}
		sum += v
	}
	return sum, nil
}

// procStatusBytes returns the value in bytes of a "Name:   N kB" line of
// /proc/<pid>/status ("self" for this process), such as VmRSS or VmHWM.
func procStatusBytes(pid, name string) (int64, error) {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	return parseKB(data, name)
}

// parseKB finds "name: N kB" in a /proc status or meminfo file.
func parseKB(data []byte, name string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != name {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%s: %q is not \"N kB\"", name, strings.TrimSpace(v))
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s: %q is not a size", name, f[0])
		}
		return n << 10, nil
	}
	return 0, fmt.Errorf("no %s line", name)
}

// peakRSS is this process's peak resident set (VmHWM) in bytes; 0 when
// unknown.
func peakRSS() int64 {
	n, _ := procStatusBytes("self", "VmHWM")
	return n
}

// memTotal is the machine's physical memory in bytes; 0 when unknown.
func memTotal() int64 { return meminfo("MemTotal") }

// memAvailable is the memory the machine can give without swapping
// (MemAvailable) in bytes; 0 when unknown.
func memAvailable() int64 { return meminfo("MemAvailable") }

// meminfo returns the "name: N kB" line of /proc/meminfo in bytes; 0 when
// it cannot be read.
func meminfo(name string) int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	n, _ := parseKB(data, name)
	return n
}

// procStatusCount returns the number on a "Name:   N" line of
// /proc/<pid>/status, such as Threads.
func procStatusCount(pid, name string) (int64, error) {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == name {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s line", name)
}

// machineBusy returns the CPU time every CPU of the machine has spent
// busy (not idle or waiting for I/O) since boot, from /proc/stat.
func machineBusy() (time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	// cpu user nice system idle iowait irq softirq steal …
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %.60q", line)
	}
	var ticks int64
	for i, s := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %q is not a count of ticks", s)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// loadAverage returns the 1-minute load average; -1 when unknown.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// resetPeakRSS starts this process's peak resident set (VmHWM) afresh, so
// peakRSS reports the peak of what follows (Linux 4.0 and later).
func resetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}
