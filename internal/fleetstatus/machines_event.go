package fleetstatus

import (
	"encoding/json"
	"strconv"
)

// machinesState is the part of a machines watcher event the document
// uses. A nil field was absent or unreadable.
type machinesState struct {
	serial  *uint64
	digest  *string
	format  *string
	stale   *bool
	reason  *string
	results []result // nil when absent
}

// parseMachinesState reads the fields of a machines watcher event's data
// one by one, so a field of an unexpected type loses only itself. Results
// without a name are dropped.
func parseMachinesState(data []byte) *machinesState {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil
	}
	ms := &machinesState{}
	if v, ok := raw["serial"]; ok {
		ms.serial = decodeSerial(v)
	}
	ms.digest = decodeField[string](raw, "digest")
	ms.format = decodeFormat(raw["format"])
	ms.stale = decodeField[bool](raw, "stale")
	ms.reason = decodeField[string](raw, "reason")
	if v, ok := raw["results"]; ok {
		var list []json.RawMessage
		if json.Unmarshal(v, &list) == nil {
			ms.results = make([]result, 0, len(list))
			for _, item := range list {
				var res result
				if json.Unmarshal(item, &res) == nil && res.Name != "" {
					ms.results = append(ms.results, res)
				}
			}
		}
	}
	return ms
}

// decodeField decodes raw[name] as a T; nil when absent or not a T.
func decodeField[T any](raw map[string]json.RawMessage, name string) *T {
	v, ok := raw[name]
	if !ok {
		return nil
	}
	var out T
	if json.Unmarshal(v, &out) != nil {
		return nil
	}
	return &out
}

// decodeSerial reads a serial written as a JSON number or a decimal string.
func decodeSerial(v json.RawMessage) *uint64 {
	var n uint64
	if json.Unmarshal(v, &n) == nil {
		return &n
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			return &n
		}
	}
	return nil
}

// decodeFormat reads the envelope format, written as "v2" or as the number
// 2.
func decodeFormat(v json.RawMessage) *string {
	if v == nil {
		return nil
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return &s
	}
	var n uint8
	if json.Unmarshal(v, &n) == nil {
		s = "v" + strconv.Itoa(int(n))
		return &s
	}
	return nil
}
