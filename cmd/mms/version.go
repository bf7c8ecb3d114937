package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Release builds may stamp these with -ldflags "-X main.version=v1.2.3
// -X main.commit=… -X main.date=…"; a stamp wins over the build info, which
// `go install …@version` and `go build` in a checkout fill in by
// themselves.
var (
	version string
	commit  string
	date    string
)

// buildInfo is what `mms version` prints.
type buildInfo struct {
	// Version is the module version (v1.2.3, or a pseudo-version from the
	// VCS), else "dev".
	Version string
	// Commit is the VCS revision, "+modified" when the tree had changes;
	// "unknown" without VCS information.
	Commit string
	// Date is the commit's time (RFC 3339), or "unknown".
	Date string
	// Go is the Go version and platform that built the binary.
	Go string
}

// currentBuild reads this binary's build information.
func currentBuild() buildInfo {
	bi, _ := debug.ReadBuildInfo()
	return describeBuild(bi, version, commit, date)
}

// describeBuild turns build information (nil when the binary has none) and
// the -ldflags stamps into a buildInfo.
func describeBuild(bi *debug.BuildInfo, stampVersion, stampCommit, stampDate string) buildInfo {
	b := buildInfo{Version: "dev", Commit: "unknown", Date: "unknown", Go: runtime.Version()}
	if bi != nil {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			b.Version = v
		}
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.time":
				b.Date = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && b.Commit != "unknown" {
			b.Commit += "+modified"
		}
		if bi.GoVersion != "" {
			b.Go = bi.GoVersion
		}
	}
	b.Go += " " + runtime.GOOS + "/" + runtime.GOARCH
	for _, s := range []struct {
		dst *string
		v   string
	}{{&b.Version, stampVersion}, {&b.Commit, stampCommit}, {&b.Date, stampDate}} {
		if v := strings.TrimSpace(s.v); v != "" {
			*s.dst = v
		}
	}
	return b
}

// String is the text of `mms version` and `mms --version`.
func (b buildInfo) String() string {
	return fmt.Sprintf("mms %s\ncommit: %s\ndate:   %s\ngo:     %s\n", b.Version, b.Commit, b.Date, b.Go)
}

func (a *app) newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, commit date and Go version of this binary",
		Long: `Print the version, VCS commit and its date, and the Go version and platform
this binary was built with, from the build information Go records (no
stamping needed for 'go install' or 'go build' in a checkout). Go records no
build time (builds are reproducible): the date is the commit's, unless a
release build stamps one with -ldflags "-X main.date=…". Same as
'mms --version'.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprint(a.stdout, currentBuild())
			return err
		},
	}
}
