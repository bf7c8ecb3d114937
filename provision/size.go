package provision

import (
	"fmt"
	"strconv"
	"strings"
)

// sizeUnits are the units ParseSize reads, longest first.
var sizeUnits = []struct {
	suffix string
	n      int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
	{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10},
	{"B", 1},
}

// ParseSize reads a size such as "64MiB", "1GiB", "10GB", "512M" (binary
// units without an i, as nats-server reads them) or a number of bytes;
// "-1" and "none" mean no limit (-1).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "-1" || strings.EqualFold(t, "none") {
		return -1, nil
	}
	mult := int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.n
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a whole number of bytes with an optional unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB), or -1 for no limit", s)
	}
	if n > 0 && mult > (1<<62)/n {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}

// FormatSize renders n bytes in the largest binary unit that divides it:
// "64MiB", "1GiB", "1536KiB", "100B".
func FormatSize(n int64) string {
	if n < 0 {
		return "-1"
	}
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.n && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
