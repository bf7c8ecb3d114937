package metricwatcher

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var parseTests = []struct {
	name string
	out  string
	want Metric
	err  string
}{
	{name: "choria json", out: `{"labels":{"unique":"u","dupe":"d"},"metrics":{"v1":1.0,"v2":1.1}}`,
		want: Metric{Labels: map[string]string{"format": "choria", "unique": "u", "dupe": "d"}, Metrics: map[string]float64{"v1": 1, "v2": 1.1}}},
	{name: "json with surrounding space", out: "\n  {\"metrics\":{\"a\":-2}}\n",
		want: Metric{Labels: map[string]string{"format": "choria"}, Metrics: map[string]float64{"a": -2}}},
	{name: "json format label wins", out: `{"labels":{"format":"mine"},"metrics":{}}`,
		want: Metric{Labels: map[string]string{"format": "mine"}, Metrics: map[string]float64{}}},
	{name: "json time and unknown fields ignored", out: `{"metrics":{"a":1},"time":5,"extra":true}`,
		want: Metric{Labels: map[string]string{"format": "choria"}, Metrics: map[string]float64{"a": 1}}},
	{name: "nagios perfdata", out: "OK: disk | free=10GB;5;2 used=90%\n",
		want: Metric{Labels: map[string]string{"format": "nagios"}, Metrics: map[string]float64{"free": 10, "used": 90}}},
	{name: "plain text", out: "hello",
		want: Metric{Labels: map[string]string{"format": "nagios"}, Metrics: map[string]float64{}}},
	{name: "empty", out: "",
		want: Metric{Labels: map[string]string{"format": "nagios"}, Metrics: map[string]float64{}}},
	{name: "json label not a string", out: `{"labels":{"a":1}}`, err: "output is not Choria's metric JSON: json: cannot unmarshal number into Go struct field .labels of type string"},
	{name: "json metric not a number", out: `{"metrics":{"a":"1"}}`, err: "output is not Choria's metric JSON: json: cannot unmarshal string into Go struct field .metrics of type float64"},
	{name: "truncated json", out: `{"metrics":`, err: "output is not Choria's metric JSON: unexpected end of JSON input"},
	{name: "trailing data", out: `{} x`, err: "output is not Choria's metric JSON: invalid character 'x' after top-level value"},
	{name: "number out of range", out: `{"metrics":{"a":1e999}}`, err: "output is not Choria's metric JSON: json: cannot unmarshal number 1e999 into Go struct field .metrics of type float64"},
}

func TestParse(t *testing.T) {
	for _, tt := range parseTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.out))
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("Parse(%q) = %v, %v; want error %q", tt.out, got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) err = %v", tt.out, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tt.out, diff)
			}
		})
	}
}

// FuzzParse: never a panic; a parsed metric has a format label, non-nil
// maps and a zero time; non-JSON output never fails.
func FuzzParse(f *testing.F) {
	for _, tt := range parseTests {
		f.Add([]byte(tt.out))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		m, err := Parse(out)
		if err != nil {
			if !strings.HasPrefix(strings.TrimSpace(string(out)), "{") {
				t.Fatalf("Parse(%q) = %v for output that is not JSON", out, err)
			}
			return
		}
		if m.Labels == nil || m.Metrics == nil || m.Labels["format"] == "" || m.Time != 0 {
			t.Fatalf("Parse(%q) = %+v", out, m)
		}
	})
}
