package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the result of one run.
type Report struct {
	// Version is the mms version, Command the command line measured.
	Version string `json:"version"`
	Command string `json:"command,omitempty"`
	// The machine: Go toolchain, OS and architecture, CPUs Go uses and
	// physical memory (0 when unknown).
	Go          string `json:"go"`
	OS          string `json:"os"`
	Arch        string `json:"arch"`
	CPUs        int    `json:"cpus"`
	MemoryBytes int64  `json:"memory_bytes,omitempty"`
	// Quick says the run was `--quick`: small sizes, not the targets'.
	Quick   bool      `json:"quick"`
	Started time.Time `json:"started"`
	// Elapsed is the run's wall time in seconds.
	Elapsed Seconds `json:"elapsed_s"`
	// LoadStart and LoadEnd are the machine's 1-minute load average when
	// the run started and ended: other work on the machine skews every
	// number (-1 when unknown).
	LoadStart float64 `json:"load_start"`
	LoadEnd   float64 `json:"load_end"`
	Rows      []Row   `json:"rows"`
}

// Row is one measured line.
type Row struct {
	// ID is stable across runs, for tools: "put", "fleet-1000",
	// "cluster-1000", "install-http-first", "idle", "spec-10000", ….
	ID string `json:"id"`
	// Group is the row group (see Groups).
	Group string `json:"group"`
	// Name says what was measured, Result the numbers, for a person.
	Name   string `json:"name"`
	Result string `json:"result"`
	// Values are the numbers, keyed by what and unit ("p50_ms").
	Values map[string]float64 `json:"values,omitempty"`
	// Target is the goal the row is judged by, and Met whether the run met
	// it (absent without a target, or when the row failed).
	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"`
	// Note says what a person needs to read the numbers right.
	Note string `json:"note,omitempty"`
	// Error says why the row could not be measured.
	Error string `json:"error,omitempty"`
	// Undefined names the values the run could not compute (a ratio to a
	// zero, say): JSON has no Inf or NaN, so WriteJSON leaves them out of
	// Values and lists them here.
	Undefined []string `json:"undefined,omitempty"`
}

// Seconds is a duration in seconds, written with millisecond precision.
type Seconds float64

// MarshalJSON writes s rounded to milliseconds.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(s), 'f', 3, 64)), nil
}

func newReport(cfg Config) *Report {
	return &Report{
		Version:     cfg.Version,
		Command:     cfg.Command,
		Go:          runtime.Version(),
		OS:          runtime.GOOS,
		Arch:        runtime.GOARCH,
		CPUs:        cpus(),
		MemoryBytes: memTotal(),
		Quick:       cfg.Quick,
		Started:     time.Now().UTC().Round(time.Second),
		LoadStart:   loadAverage(),
	}
}

// failed returns a row that could not be measured.
func failed(id, group, name, target string, err error) Row {
	return Row{ID: id, Group: group, Name: name, Result: "error", Target: target, Error: truncate(err.Error())}
}

// truncate caps a row's error at maxError bytes.
func truncate(msg string) string {
	if len(msg) > maxError {
		return msg[:maxError] + "…"
	}
	return msg
}

// maxError caps a row's error: enough for the first reasons.
const maxError = 1000

// judge sets r.Met from ok.
func (r *Row) judge(ok bool) { r.Met = &ok }

// WriteJSON writes the report as indented JSON. A value that is not a
// finite number (JSON has none) moves from the row's Values to its
// Undefined list, so one ratio to a zero never costs the whole report.
func (r *Report) WriteJSON(w io.Writer) error {
	out := *r
	out.Rows = make([]Row, len(r.Rows))
	for i, row := range r.Rows {
		out.Rows[i] = row.finite()
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(&out)
}

// finite returns a copy of r whose Values holds only finite numbers; the
// names of the others are added to Undefined, sorted.
func (r Row) finite() Row {
	values := make(map[string]float64, len(r.Values))
	var undefined []string
	for k, v := range r.Values {
		if math.IsInf(v, 0) || math.IsNaN(v) {
			undefined = append(undefined, k)
			continue
		}
		values[k] = v
	}
	if len(undefined) == 0 {
		return r
	}
	slices.Sort(undefined)
	r.Values = values
	r.Undefined = append(slices.Clip(r.Undefined), undefined...)
	return r
}

// WriteTable writes the report for a person: the machine, one line per row,
// then the notes and errors.
func (r *Report) WriteTable(w io.Writer) error {
	mem := ""
	if r.MemoryBytes > 0 {
		mem = fmt.Sprintf(", %.0f GB", float64(r.MemoryBytes)/(1<<30))
	}
	quick := ""
	if r.Quick {
		quick = " (--quick: small sizes; the targets are for a full run)"
	}
	fmt.Fprintf(w, "mms %s bench on %s/%s, %d CPUs%s, %s; %s, took %.0f s, load average %.2f at the start, %.2f at the end%s\n\n",
		r.Version, r.OS, r.Arch, r.CPUs, mem, r.Go, r.Started.Format(time.DateOnly), float64(r.Elapsed), r.LoadStart, r.LoadEnd, quick)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROW\tRESULT\tTARGET\tMET")
	for _, row := range r.Rows {
		met := "-"
		switch {
		case row.Error != "":
			met = "error"
		case row.Met != nil && *row.Met:
			met = "yes"
		case row.Met != nil:
			met = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", row.Name, row.Result, cmp.Or(row.Target, "-"), met)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var notes []string
	for _, row := range r.Rows {
		if row.Error != "" {
			notes = append(notes, fmt.Sprintf("%s: error: %s", row.ID, row.Error))
		}
		if row.Note != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", row.ID, row.Note))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\n%s\n", strings.Join(notes, "\n"))
	}
	return nil
}

// ms formats d in milliseconds for a person.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 10_000:
		return fmt.Sprintf("%.1f s", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

// msValue is d in milliseconds, for Values.
func msValue(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// thousands formats n with thousands separators: 10,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
