package machineswatcher

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mms-io/mms/manager"
)

// describe says why a machines watcher's state event happened: the spec
// and, when it was not applied, its outcome word and why ("serial 9
// untrusted: …"); for a download in progress, how far it is ("serial 9:
// web downloading: 2.0 MiB of 8.0 MiB (25%)"); else what happened to each
// entry that did not stay unchanged (skips with their matcher, failures
// with their error). An
// event that names no spec (a check that failed before reading one) adds
// nothing: its error says it all. It reads only the fields it needs, so
// an event of Choria's machines watcher reads as well.
func describe(data []byte) string {
	var s struct {
		Serial   uint64                  `json:"serial"`
		Digest   string                  `json:"digest"`
		Format   string                  `json:"format"`
		Rejected string                  `json:"rejected"`
		Reason   string                  `json:"reason"`
		Results  []manager.MachineResult `json:"results"`
		Download *DownloadProgress       `json:"download"`
		Omitted  int                     `json:"omitted_results"`
	}
	if json.Unmarshal(data, &s) != nil {
		return ""
	}
	if d := s.Download; d != nil && d.Machine != "" {
		return manager.SpecLabel(s.Format, s.Serial, s.Digest) + ": " + d.Machine + " " + manager.DownloadText(d.Done, d.Total)
	}
	if s.Serial == 0 && s.Digest == "" && s.Format == "" && s.Rejected == "" && len(s.Results) == 0 {
		return ""
	}
	label := manager.SpecLabel(s.Format, s.Serial, s.Digest)
	if s.Rejected != "" {
		label += " " + manager.Rejection(s.Rejected).Outcome(s.Format)
		if s.Reason == "" {
			return label
		}
		return label + ": " + s.Reason
	}
	var parts []string
	for _, r := range s.Results {
		switch r.Outcome {
		case manager.EntryUnchanged:
			continue
		case manager.EntrySkipped:
			if r.Match != "" {
				parts = append(parts, fmt.Sprintf("%s skipped (match %s)", r.Name, r.Match))
				continue
			}
		}
		part := r.Name + " " + string(r.Outcome)
		if r.Reason != "" && r.Outcome != manager.EntrySkipped {
			part += " (" + r.Reason + ")"
		}
		parts = append(parts, part)
	}
	if s.Omitted > 0 {
		parts = append(parts, fmt.Sprintf("%d more skipped or unchanged", s.Omitted))
	}
	if len(parts) == 0 {
		return label
	}
	return label + ": " + strings.Join(parts, ", ")
}
