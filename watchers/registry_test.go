package watchers

import (
	"errors"
	"strings"
	"testing"
)

func TestUnknownType(t *testing.T) {
	tests := []struct {
		typ, want string
	}{
		{typ: "nope", want: `unknown watcher type "nope"`},
		{typ: "plugins", want: `unknown watcher type "plugins": Choria's plugins watcher is not supported: ` + refused["plugins"]},
		{typ: "homekit", want: `unknown watcher type "homekit": Choria's homekit watcher is not supported: Choria removed it too (go-choria#2288): switch the device from an exec watcher`},
		{typ: "httpswitch", want: `unknown watcher type "httpswitch": Choria's httpswitch watcher is not supported: ` + refused["httpswitch"]},
		{typ: "ccm_manifest", want: `unknown watcher type "ccm_manifest": Choria's ccm_manifest watcher is not supported: ` + refused["ccm_manifest"]},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			for name, err := range map[string]error{"UnknownType": UnknownType(tt.typ), "Build": buildErr(tt.typ)} {
				if !errors.Is(err, ErrUnknownType) || err.Error() != tt.want {
					t.Errorf("%s(%q) = %v, want %q wrapping ErrUnknownType", name, tt.typ, err, tt.want)
				}
			}
		})
	}
	for typ, why := range Refused() {
		if !strings.Contains(why, " ") || strings.HasSuffix(why, ".") {
			t.Errorf("Refused()[%q] = %q: want a sentence without a final period", typ, why)
		}
	}
	Refused()["plugins"] = "changed"
	if refused["plugins"] == "changed" {
		t.Error("Refused() returned the package's own map")
	}
}

func buildErr(typ string) error {
	_, err := Build(typ, nil)
	return err
}
