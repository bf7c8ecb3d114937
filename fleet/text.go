package fleet

import (
	"fmt"
	"slices"
	"time"

	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/nodestatus"
)

// Age formats a duration the way people read ages: 4s, 9m, 3h, 2d.
func Age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// DownloadLine describes a download in progress: "downloading: 12.0 MiB
// of 50.0 MiB (24%)".
func DownloadLine(p *nodestatus.Download) string { return manager.DownloadText(p.Done, p.Total) }

// short abbreviates a digest or checksum to 12 characters.
func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// plural is "s" unless n is 1.
func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// capList returns list, its tail replaced by "and N more" beyond n.
func capList(list []string, n int) []string {
	if len(list) <= n {
		return list
	}
	return append(slices.Clone(list[:n]), fmt.Sprintf("and %d more", len(list)-n))
}
