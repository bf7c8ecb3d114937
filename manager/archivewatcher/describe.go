package archivewatcher

import "encoding/json"

// describe says why an archive watcher's state event happened when
// verification found an installed file modified: "tampered: web/check.sh".
func describe(data []byte) string {
	var s struct {
		Tampered string `json:"tampered"`
	}
	if json.Unmarshal(data, &s) != nil || s.Tampered == "" {
		return ""
	}
	return "tampered: " + s.Tampered
}
