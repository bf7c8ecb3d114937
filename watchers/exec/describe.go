package execwatcher

import (
	"encoding/json"
	"fmt"
	"strings"
)

// describe says why an exec watcher's state event happened: for a run that
// did not succeed, its exit code and the first line of its stderr
// ("exit 2: connection refused"). A command that did not exit by itself
// (exit code -1) has its error in the event already.
func describe(data []byte) string {
	var s struct {
		Outcome  string `json:"outcome"`
		ExitCode *int   `json:"exit_code"`
		Stderr   string `json:"stderr"`
	}
	if json.Unmarshal(data, &s) != nil || s.Outcome == "success" || s.ExitCode == nil {
		return ""
	}
	var parts []string
	if *s.ExitCode >= 0 {
		parts = append(parts, fmt.Sprintf("exit %d", *s.ExitCode))
	}
	if line := firstLine(s.Stderr); line != "" {
		parts = append(parts, line)
	}
	return strings.Join(parts, ": ")
}

// firstLine is the first non-blank line of s, trimmed.
func firstLine(s string) string {
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return ""
}
