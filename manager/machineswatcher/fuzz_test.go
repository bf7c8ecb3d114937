package machineswatcher

import (
	"encoding/json"
	"testing"

	"github.com/mms-io/mms/watchers"
)

// FuzzMachinesProperties feeds arbitrary properties through the registry's
// strict decoding and Validate: nothing may panic, and accepted properties
// must be usable (a data item, parsed keys unless insecure, a sane
// threshold and verify interval).
func FuzzMachinesProperties(f *testing.F) {
	for _, seed := range []string{
		`{"data_item":"spec","public_keys":["` + validKey + `"]}`,
		`{"data_item":"spec","purge_unknown":true,"public_keys":["` + validKey + `"],"threshold":1,"allow_legacy_spec":true,"allow_http":true,"state_dir":"/var/lib/mms","verify_interval":"2h","machines_dir":"/etc/mms/machines"}`,
		`{"data_item":"spec","public_key":"` + validKey + `"}`,
		`{"data_item":"spec","insecure_unsigned":true}`,
		`{"data_item":"spec","public_keys":["abc"],"threshold":-1}`,
		`{"data_item":"spec","public_keys":["` + validKey + `"],"verify_interval":12}`,
		`{"data_item":"","machine_manage_interval":"5m"}`,
		`null`, `{}`, `[]`, `{"data_item":1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, props []byte) {
		w, err := watchers.Build("machines", json.RawMessage(props))
		if err != nil {
			return
		}
		m := w.(*Watcher)
		if m.DataItem == "" {
			t.Fatalf("accepted %q without a data_item", props)
		}
		if len(m.trust.Keys()) == 0 && !m.trust.Unsigned() {
			t.Fatalf("accepted %q without trusted keys", props)
		}
		if m.Threshold < 0 || m.trust.Threshold() < 1 || m.trust.Threshold() > max(len(m.trust.Keys()), 1) {
			t.Fatalf("accepted %q with threshold %d", props, m.Threshold)
		}
		if m.verifyEvery < MinVerifyInterval {
			t.Fatalf("accepted %q with verify interval %v", props, m.verifyEvery)
		}
	})
}
