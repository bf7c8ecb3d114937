package metricwatcher

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"

	"github.com/mms-io/mms/watchers/internal/perfdata"
)

// Metric is Choria's metric document, the metrics field of the state
// event: the labels, the values by name and the unix time of the run.
type Metric struct {
	Labels  map[string]string  `json:"labels"`
	Metrics map[string]float64 `json:"metrics"`
	Time    int64              `json:"time"`
}

// Parse reads a metric command's output. Output that is a JSON object is
// Choria's format,
//
//	{"labels": {"mount": "/"}, "metrics": {"free": 10.5, "used": 89.5}}
//
// labelled format=choria (the output's own labels win); anything else is
// read as Nagios plugin output whose performance data are the metrics
// (label → value), labelled format=nagios. A JSON object that does not
// decode into that shape (a label that is not a string, a metric that is
// not a number, trailing data) is an error; output that is not JSON never
// is, though it may hold no metrics. The time is left zero.
func Parse(out []byte) (Metric, error) {
	m := Metric{Labels: map[string]string{}, Metrics: map[string]float64{}}
	if bytes.HasPrefix(bytes.TrimSpace(out), []byte("{")) {
		var doc struct {
			Labels  map[string]string  `json:"labels"`
			Metrics map[string]float64 `json:"metrics"`
		}
		if err := json.Unmarshal(out, &doc); err != nil {
			return Metric{}, fmt.Errorf("output is not Choria's metric JSON: %w", err)
		}
		m.Labels["format"] = "choria"
		maps.Copy(m.Labels, doc.Labels)
		maps.Copy(m.Metrics, doc.Metrics)
		return m, nil
	}
	m.Labels["format"] = "nagios"
	for _, it := range perfdata.Parse(string(out)) {
		m.Metrics[it.Label] = it.Value
	}
	return m, nil
}
