// Package perfdata parses the performance data of Nagios plugin output, as
// the Nagios plugin development guidelines describe it:
//
//	TEXT OUTPUT | PERFDATA
//	LONG TEXT LINE 1
//	LONG TEXT LINE 2 | PERFDATA LINE 2
//	PERFDATA LINE 3
//
// The performance data is what follows the first '|' of the first line,
// plus, from the first later line holding a '|', what follows it and every
// line after. Each item is
//
//	'label'=value[UOM];[warn];[crit];[min];[max]
//
// items separated by spaces; a label with spaces or '=' is quoted with
// single quotes, and a quote inside it is doubled. Items that do not parse
// (no '=', a value that is not a number, such as U for "undetermined") are
// skipped, as Choria skips them.
package perfdata

import (
	"math"
	"regexp"
	"strconv"
	"strings"
)

// MaxItems caps the items parsed from one output.
const MaxItems = 1000

// Item is one item of performance data. Label, Value and Unit are Choria's
// fields (spaces in a label become '_', as Choria makes them); the
// thresholds and bounds are mms additions, as given.
type Item struct {
	Unit  string  `json:"unit"`
	Label string  `json:"label"`
	Value float64 `json:"value"`
	// Warning and Critical are the threshold ranges ("10", "10:20",
	// "@~:5"…), Min and Max the bounds, as the plugin printed them.
	Warning  string `json:"warning,omitempty"`
	Critical string `json:"critical,omitempty"`
	Min      string `json:"min,omitempty"`
	Max      string `json:"max,omitempty"`
}

// number is a value's numeric prefix; the rest is its unit of measure.
var number = regexp.MustCompile(`^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?`)

// unit is what a unit of measure may be: letters and '%' (s, ms, us, %, B,
// KB, MB, GB, TB, c, and the other units plugins print in practice).
var unit = regexp.MustCompile(`^[a-zA-Z%]*$`)

// Parse returns the performance data in a plugin's output, nil when there
// is none.
func Parse(output string) []Item {
	var items []Item
	for _, s := range sections(output) {
		for len(s) > 0 && len(items) < MaxItems {
			var raw string
			raw, s = nextItem(s)
			if it, ok := parseItem(raw); ok {
				items = append(items, it)
			}
		}
	}
	return items
}

// sections returns the perfdata parts of output.
func sections(output string) []string {
	first, long, _ := strings.Cut(output, "\n")
	var out []string
	if _, pd, ok := strings.Cut(first, "|"); ok {
		out = append(out, pd)
	}
	if i := strings.IndexByte(long, '|'); i >= 0 {
		out = append(out, long[i+1:])
	}
	return out
}

// nextItem splits the next blank-separated item off s, honouring quoted
// labels (in which blanks do not separate).
func nextItem(s string) (item, rest string) {
	s = strings.TrimLeft(s, " \t\r\n")
	i := 0
	if strings.HasPrefix(s, "'") {
		// Skip the quoted label, to the end of s when it is not closed.
		i = len(s)
		if end := closingQuote(s); end >= 0 {
			i = end + 1
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			break
		}
	}
	return s[:i], s[i:]
}

// parseItem parses one 'label'=value[UOM];warn;crit;min;max.
func parseItem(raw string) (Item, bool) {
	var label, rest string
	if strings.HasPrefix(raw, "'") {
		end := closingQuote(raw)
		if end < 0 || end+1 >= len(raw) || raw[end+1] != '=' {
			return Item{}, false
		}
		label = strings.ReplaceAll(raw[1:end], "''", "'")
		rest = raw[end+2:]
	} else {
		var ok bool
		label, rest, ok = strings.Cut(raw, "=")
		if !ok {
			return Item{}, false
		}
	}
	label = strings.ReplaceAll(label, " ", "_")
	if label == "" {
		return Item{}, false
	}
	fields := strings.Split(rest, ";")
	num := number.FindString(fields[0])
	if num == "" || !unit.MatchString(fields[0][len(num):]) {
		return Item{}, false
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return Item{}, false
	}
	it := Item{Label: label, Value: v, Unit: fields[0][len(num):]}
	for i, p := range []*string{&it.Warning, &it.Critical, &it.Min, &it.Max} {
		if i+1 < len(fields) {
			*p = fields[i+1]
		}
	}
	return it, true
}

// closingQuote returns the index of the quote that closes the quoted label
// s starts with, -1 when there is none; a doubled quote is part of the
// label.
func closingQuote(s string) int {
	for i := 1; i < len(s); i++ {
		if s[i] == '\'' {
			if i+1 < len(s) && s[i+1] == '\'' {
				i++
				continue
			}
			return i
		}
	}
	return -1
}
