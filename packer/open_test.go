package packer

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/spec"
)

// openRejectCase is one envelope Open must refuse, with the exact error.
type openRejectCase struct {
	name     string
	data     []byte
	opts     OpenOptions // Trusted defaults to {A}, Now to envTestNow, AllowV1 to true
	noV1     bool
	wantKind error
	wantMsg  string
}

// openRejectCases returns every rejection Open makes before the replay
// rules, for the table test and as fuzz seeds.
func openRejectCases(t testing.TB) []openRejectCase {
	pubA, privA := envTestKey("a")
	pubB, privB := envTestKey("b")
	_, privC := envTestKey("c")
	idA, idB, idC := KeyID(pubA), KeyID(pubB), KeyID(privC.Public().(ed25519.PublicKey))
	good := envTestSeal(t, FormatV2, envTestSpec(), privA)
	goodV1 := envTestSeal(t, FormatV1, envTestSpecV1(), privA)
	edit := func(data []byte, f func(map[string]any)) []byte { return envTestEditJSON(t, data, f) }
	validPayload := func(extra string) []byte {
		return []byte(`{"serial":3,"issued_at":"2026-01-01T00:00:00Z","machines":[{"name":"m","source":"https://x/m.tgz","checksum":"c","verify_checksum":"v"` + extra + `}]}`)
	}
	sigOf := func(data []byte) map[string]any {
		var sig map[string]any
		edit(data, func(m map[string]any) { sig = m["signatures"].([]any)[0].(map[string]any) })
		return sig
	}
	tampered := edit(good, func(m map[string]any) {
		m["payload"] = base64.StdEncoding.EncodeToString(bytes.Replace(envTestB64(t, m["payload"].(string)), []byte(`"facts"`), []byte(`"evil1"`), 1))
	})
	rawSigned := edit(good, func(m map[string]any) { // signature over the payload itself, not its PAE
		payload := envTestB64(t, m["payload"].(string))
		m["signatures"] = []any{map[string]any{"keyid": idA, "sig": base64.StdEncoding.EncodeToString(ed25519.Sign(privA, payload))}}
	})
	seventeen := edit(good, func(m map[string]any) {
		sigs := make([]any, 17)
		for i := range sigs {
			sigs[i] = sigOf(good)
		}
		m["signatures"] = sigs
	})
	return []openRejectCase{
		{name: "empty", data: nil, wantKind: ErrMalformed, wantMsg: "malformed spec envelope: envelope is empty"},
		{name: "only whitespace", data: []byte(" \n\t"), wantKind: ErrMalformed, wantMsg: "malformed spec envelope: envelope is empty"},
		{name: "not json", data: []byte("machines: x"), wantKind: ErrMalformed, wantMsg: "malformed spec envelope: envelope is not a JSON object"},
		{name: "json array", data: []byte(`[{"machines":"W10="}]`), wantKind: ErrMalformed, wantMsg: "malformed spec envelope: envelope is not a JSON object"},
		{name: "json null", data: []byte(`null`), wantKind: ErrMalformed, wantMsg: "malformed spec envelope: envelope is not a JSON object"},
		{name: "trailing data", data: append(bytes.Clone(good), "{}"...), wantKind: ErrMalformed,
			wantMsg: "malformed spec envelope: envelope is not valid JSON: invalid character '{' after top-level value"},
		{name: "bad json object", data: []byte(`{machines: "W10="}`), wantKind: ErrMalformed,
			wantMsg: "malformed spec envelope: envelope is not valid JSON: invalid character 'm' looking for beginning of object key string"},
		{name: "too large", data: append([]byte(`{"machines":"`), bytes.Repeat([]byte("A"), MaxEnvelopeSize)...), wantKind: ErrMalformed,
			wantMsg: fmt.Sprintf("malformed spec envelope: envelope is %d bytes, at most %d allowed", MaxEnvelopeSize+13, MaxEnvelopeSize)},
		{name: "neither format", data: []byte(`{"payload":"e30=","signatures":[]}`), wantKind: ErrMalformed,
			wantMsg: "malformed spec envelope: envelope has neither payloadType (v2) nor machines (v1)"},
		{name: "both formats", data: edit(good, func(m map[string]any) { m["machines"] = "W10=" }), wantKind: ErrMalformed,
			wantMsg: "malformed spec envelope: envelope has both payloadType (v2) and machines (v1)"},
		{name: "unknown v2 field", data: edit(good, func(m map[string]any) { m["serial"] = 9 }), wantKind: ErrMalformed,
			wantMsg: `malformed spec envelope: unknown v2 envelope field "serial"`},
		{name: "v2 field in other case", data: edit(good, func(m map[string]any) { m["Signatures"] = m["signatures"]; delete(m, "signatures") }), wantKind: ErrMalformed,
			wantMsg: `malformed spec envelope: unknown v2 envelope field "Signatures"`},
		{name: "unknown v1 field", data: edit(goodV1, func(m map[string]any) { m["serial"] = 9 }), wantKind: ErrMalformed,
			wantMsg: `malformed spec envelope: unknown v1 envelope field "serial"`},
		{name: "wrong payload type", data: edit(good, func(m map[string]any) { m["payloadType"] = "application/vnd.in-toto+json" }), wantKind: ErrMalformed,
			wantMsg: `malformed spec envelope: v2 envelope: payloadType is "application/vnd.in-toto+json", want "application/vnd.mms.spec+json; version=2" or "application/vnd.mms.spec+json; version=2; compression=zstd"`},
		{name: "payload type of wrong json type", data: edit(good, func(m map[string]any) { m["payloadType"] = 2 }), wantKind: ErrMalformed,
			wantMsg: "malformed spec envelope: decoding v2 envelope: json: cannot unmarshal number into Go struct field Envelope.payloadType of type string"},
		{name: "payload not base64", data: edit(good, func(m map[string]any) { m["payload"] = "not base64!" }), wantKind: ErrMalformed,
			wantMsg: "malformed spec envelope: v2 envelope: payload is not valid standard base64"},
		{name: "payload url base64", data: edit(good, func(m map[string]any) {
			m["payload"] = base64.URLEncoding.EncodeToString(append(envTestB64(t, m["payload"].(string)), 0xfb, 0xff))
		}), wantKind: ErrMalformed, wantMsg: "malformed spec envelope: v2 envelope: payload is not valid standard base64"},
		{name: "payload empty", data: edit(good, func(m map[string]any) { m["payload"] = "" }), wantKind: ErrMalformed,
			wantMsg: "malformed spec envelope: v2 envelope: payload is empty"},
		{name: "seventeen signatures", data: seventeen, wantKind: ErrMalformed,
			wantMsg: "malformed spec envelope: v2 envelope: 17 signatures, at most 16 allowed"},
		{name: "keyid not hex", data: edit(good, func(m map[string]any) {
			sigOf := sigOf(good)
			sigOf["keyid"] = "ABCDEF0123456789"
			m["signatures"] = []any{sigOf}
		}),
			wantKind: ErrMalformed, wantMsg: "malformed spec envelope: v2 envelope: signatures[0]: keyid is not 16 lowercase hex characters"},
		{name: "keyid missing", data: edit(good, func(m map[string]any) { m["signatures"] = []any{map[string]any{"sig": sigOf(good)["sig"]}} }),
			wantKind: ErrMalformed, wantMsg: "malformed spec envelope: v2 envelope: signatures[0]: keyid is not 16 lowercase hex characters"},
		{name: "sig not base64", data: edit(good, func(m map[string]any) { m["signatures"] = []any{map[string]any{"keyid": idA, "sig": "%%"}} }),
			wantKind: ErrMalformed, wantMsg: "malformed spec envelope: v2 envelope: signatures[0]: sig is not valid standard base64"},
		{name: "unknown signature field", data: edit(good, func(m map[string]any) { s := sigOf(good); s["alg"] = "ed25519"; m["signatures"] = []any{s} }),
			wantKind: ErrMalformed, wantMsg: `malformed spec envelope: decoding v2 envelope: json: unknown field "alg"`},
		{name: "v1 machines null", data: []byte(`{"machines":null}`), wantKind: ErrMalformed, wantMsg: "malformed spec envelope: v1 envelope: machines is null"},
		{name: "v1 machines empty", data: []byte(`{"machines":""}`), wantKind: ErrMalformed, wantMsg: "malformed spec envelope: v1 envelope: machines is empty"},
		{name: "v1 machines not base64", data: []byte(`{"machines":"[]"}`), wantKind: ErrMalformed, wantMsg: "malformed spec envelope: v1 envelope: machines is not valid base64"},
		{name: "v1 signature not hex", data: edit(goodV1, func(m map[string]any) { m["signature"] = "zz" }), wantKind: ErrMalformed,
			wantMsg: "malformed spec envelope: v1 envelope: signature is not valid hex"},
		{name: "v1 signature short", data: edit(goodV1, func(m map[string]any) { m["signature"] = m["signature"].(string)[:126] }), wantKind: ErrMalformed,
			wantMsg: "malformed spec envelope: v1 envelope: signature is 63 bytes, want 64"},
		{name: "v1 not allowed", data: goodV1, noV1: true, wantKind: ErrLegacyRefused,
			wantMsg: "v1 spec refused: v1 envelopes have no serial or expiry, so no replay protection, and v1 is not allowed"},
		{name: "v2 unsigned", data: envTestSeal(t, FormatV2, envTestSpec()), wantKind: ErrUnsigned,
			wantMsg: "spec rejected: 0/1 valid signatures (envelope is unsigned)"},
		{name: "v2 signatures null", data: edit(good, func(m map[string]any) { m["signatures"] = nil }), wantKind: ErrUnsigned,
			wantMsg: "spec rejected: 0/1 valid signatures (envelope is unsigned)"},
		{name: "v1 unsigned", data: envTestSeal(t, FormatV1, envTestSpecV1()), wantKind: ErrUnsigned,
			wantMsg: "spec rejected: 0/1 valid signatures (envelope is unsigned)"},
		{name: "v1 empty signature", data: []byte(`{"machines":"W10=","signature":""}`), wantKind: ErrUnsigned,
			wantMsg: "spec rejected: 0/1 valid signatures (envelope is unsigned)"},
		{name: "unsigned with bad payload fails on signature first", data: envTestSignV2(t, []byte(`{"password":"x"}`)), wantKind: ErrUnsigned,
			wantMsg: "spec rejected: 0/1 valid signatures (envelope is unsigned)"},
		{name: "signed by untrusted key", data: envTestSeal(t, FormatV2, envTestSpec(), privB), wantKind: ErrUnknownKey,
			wantMsg: fmt.Sprintf("spec rejected: 0/1 valid signatures (keyid %s not trusted)", idB)},
		{name: "untrusted key with bad payload fails on signature first", data: envTestSignV2(t, []byte(`not json`), privB), wantKind: ErrUnknownKey,
			wantMsg: fmt.Sprintf("spec rejected: 0/1 valid signatures (keyid %s not trusted)", idB)},
		{name: "trusted key id with untrusted key's signature", data: edit(envTestSeal(t, FormatV2, envTestSpec(), privB), func(m map[string]any) {
			s := sigOf(envTestSeal(t, FormatV2, envTestSpec(), privB))
			s["keyid"] = idA
			m["signatures"] = []any{s}
		}), wantKind: ErrBadSignature, wantMsg: fmt.Sprintf("spec rejected: 0/1 valid signatures (keyid %s: signature does not verify)", idA)},
		{name: "tampered payload", data: tampered, wantKind: ErrBadSignature,
			wantMsg: fmt.Sprintf("spec rejected: 0/1 valid signatures (keyid %s: signature does not verify)", idA)},
		{name: "signature without domain separation", data: rawSigned, wantKind: ErrBadSignature,
			wantMsg: fmt.Sprintf("spec rejected: 0/1 valid signatures (keyid %s: signature does not verify)", idA)},
		{name: "truncated signature", data: edit(good, func(m map[string]any) {
			s := sigOf(good)
			s["sig"] = base64.StdEncoding.EncodeToString(envTestB64(t, s["sig"].(string))[:63])
			m["signatures"] = []any{s}
		}), wantKind: ErrBadSignature, wantMsg: fmt.Sprintf("spec rejected: 0/1 valid signatures (keyid %s: signature does not verify)", idA)},
		{name: "v1 signed by untrusted key", data: envTestSeal(t, FormatV1, envTestSpecV1(), privB), wantKind: ErrBadSignature,
			wantMsg: "spec rejected: 0/1 valid signatures (v1 signature verifies with none of the 1 trusted keys)"},
		{name: "v1 tampered", data: edit(goodV1, func(m map[string]any) {
			m["machines"] = base64.StdEncoding.EncodeToString(bytes.Replace(envTestB64(t, m["machines"].(string)), []byte("motd"), []byte("evil"), 1))
		}), wantKind: ErrBadSignature, wantMsg: "spec rejected: 0/1 valid signatures (v1 signature verifies with none of the 1 trusted keys)"},
		{name: "threshold 2, same signature twice", data: edit(good, func(m map[string]any) { m["signatures"] = []any{sigOf(good), sigOf(good)} }),
			opts: OpenOptions{Trusted: []ed25519.PublicKey{pubA, pubB}, Threshold: 2}, wantKind: ErrBelowThreshold,
			wantMsg: fmt.Sprintf("spec rejected: 1/2 valid signatures (keyid %s signed more than once, counted once)", idA)},
		{name: "threshold 2, trusted and untrusted key", data: envTestSeal(t, FormatV2, envTestSpec(), privA, privC),
			opts: OpenOptions{Trusted: []ed25519.PublicKey{pubA, pubB}, Threshold: 2}, wantKind: ErrBelowThreshold,
			wantMsg: fmt.Sprintf("spec rejected: 1/2 valid signatures (keyid %s not trusted)", idC)},
		{name: "threshold 2, one good one bad", data: edit(envTestSeal(t, FormatV2, envTestSpec(), privA, privB), func(m map[string]any) {
			s := m["signatures"].([]any)
			s[1].(map[string]any)["sig"] = s[0].(map[string]any)["sig"]
		}), opts: OpenOptions{Trusted: []ed25519.PublicKey{pubA, pubB}, Threshold: 2}, wantKind: ErrBadSignature,
			wantMsg: fmt.Sprintf("spec rejected: 1/2 valid signatures (keyid %s: signature does not verify)", idB)},
		{name: "threshold 2, v1 carries one signature", data: goodV1,
			opts: OpenOptions{Trusted: []ed25519.PublicKey{pubA, pubB}, Threshold: 2}, wantKind: ErrBelowThreshold,
			wantMsg: "spec rejected: 1/2 valid signatures (no other trusted key signed)"},
		{name: "v2 payload with password", data: envTestSignV2(t, validPayload(`,"password":"hunter2"`), privA), wantKind: ErrMalformed,
			wantMsg: `malformed spec envelope: decoding v2 payload: machine[0] "m": unknown field "password"`},
		{name: "v2 payload with username", data: envTestSignV2(t, validPayload(`,"username":"u"`), privA), wantKind: ErrMalformed,
			wantMsg: `malformed spec envelope: decoding v2 payload: machine[0] "m": unknown field "username"`},
		{name: "v2 payload unknown top-level field", data: envTestSignV2(t, []byte(`{"serial":3,"issued_at":"2026-01-01T00:00:00Z","target":"prod","machines":[]}`), privA),
			wantKind: ErrMalformed, wantMsg: `malformed spec envelope: decoding v2 payload: unknown field "target"`},
		{name: "v2 payload not json", data: envTestSignV2(t, []byte(`serial: 3`), privA), wantKind: ErrMalformed,
			wantMsg: "malformed spec envelope: decoding v2 payload: invalid JSON at line 1, column 1: invalid character 's' looking for beginning of value"},
		{name: "v2 payload trailing data", data: envTestSignV2(t, []byte(`{"serial":3,"issued_at":"2026-01-01T00:00:00Z","machines":[]} {}`), privA),
			wantKind: ErrMalformed, wantMsg: "malformed spec envelope: decoding v2 payload: invalid JSON at line 1, column 63: unexpected data after the end of the value"},
		{name: "v2 payload serial missing", data: envTestSignV2(t, []byte(`{"issued_at":"2026-01-01T00:00:00Z","machines":[]}`), privA),
			wantKind: ErrMalformed, wantMsg: "malformed spec envelope: decoding v2 payload: serial is missing or 0, want at least 1"},
		{name: "v2 payload serial 0", data: envTestSignV2(t, []byte(`{"serial":0,"issued_at":"2026-01-01T00:00:00Z","machines":[]}`), privA),
			wantKind: ErrMalformed, wantMsg: "malformed spec envelope: decoding v2 payload: serial is missing or 0, want at least 1"},
		{name: "v2 payload serial negative", data: envTestSignV2(t, []byte(`{"serial":-1,"issued_at":"2026-01-01T00:00:00Z","machines":[]}`), privA),
			wantKind: ErrMalformed, wantMsg: "malformed spec envelope: decoding v2 payload: serial: want a whole number from 1 to 18446744073709551615, got -1"},
		{name: "v2 payload issued_at missing", data: envTestSignV2(t, []byte(`{"serial":3,"machines":[]}`), privA),
			wantKind: ErrMalformed, wantMsg: "malformed spec envelope: decoding v2 payload: issued_at is missing"},
		{name: "v2 payload issued_at not RFC 3339", data: envTestSignV2(t, []byte(`{"serial":3,"issued_at":"yesterday","machines":[]}`), privA),
			wantKind: ErrMalformed, wantMsg: `malformed spec envelope: decoding v2 payload: issued_at: want an RFC 3339 time such as 2025-01-31T12:00:00Z, got "yesterday"`},
		{name: "v2 payload machines missing", data: envTestSignV2(t, []byte(`{"serial":3,"issued_at":"2026-01-01T00:00:00Z"}`), privA),
			wantKind: ErrMalformed, wantMsg: "malformed spec envelope: decoding v2 payload: machines: required"},
		{name: "v2 payload machines null", data: envTestSignV2(t, []byte(`{"serial":3,"issued_at":"2026-01-01T00:00:00Z","machines":null}`), privA),
			wantKind: ErrMalformed, wantMsg: "malformed spec envelope: decoding v2 payload: machines: want a list of machines, got null"},
		{name: "v2 payload machine not an object", data: envTestSignV2(t, []byte(`{"serial":3,"issued_at":"2026-01-01T00:00:00Z","machines":["m"]}`), privA),
			wantKind: ErrMalformed, wantMsg: `malformed spec envelope: decoding v2 payload: machine[0]: want an object, got "m"`},
		{name: "v1 machines unknown field", data: envTestSignV1(t, []byte(`[{"name":"m","auth_ref":"x"}]`), privA),
			wantKind: ErrMalformed, wantMsg: `malformed spec envelope: decoding v1 machines: machine[0] "m": unknown field "auth_ref"`},
		{name: "v1 machines null", data: envTestSignV1(t, []byte(`null`), privA),
			wantKind: ErrMalformed, wantMsg: "malformed spec envelope: decoding v1 machines: want a JSON list of machines, got null"},
		{name: "v1 machines object", data: envTestSignV1(t, []byte(`{"name":"m"}`), privA),
			wantKind: ErrMalformed, wantMsg: "malformed spec envelope: decoding v1 machines: want a JSON list of machines, got an object"},
		{name: "expired", data: envTestSeal(t, FormatV2, envTestSpecWith(func(s *spec.Spec) { s.Expires = envTestNow.Add(-2 * time.Hour) }), privA),
			wantKind: ErrExpired, wantMsg: "spec expired 2h0m0s ago"},
		{name: "expires exactly now", data: envTestSeal(t, FormatV2, envTestSpecWith(func(s *spec.Spec) { s.Expires = envTestNow }), privA),
			wantKind: ErrExpired, wantMsg: "spec expired 0s ago"},
		{name: "issued in the future", data: envTestSeal(t, FormatV2, envTestSpecWith(func(s *spec.Spec) {
			s.IssuedAt = envTestNow.Add(8 * time.Hour)
			s.Expires = time.Time{}
		}), privA), wantKind: ErrNotYetValid, wantMsg: "spec not valid yet (issued 8h0m0s in the future, allowed clock skew 5m0s)"},
		{name: "issued beyond a custom skew", data: envTestSeal(t, FormatV2, envTestSpecWith(func(s *spec.Spec) { s.IssuedAt = envTestNow.Add(90 * time.Second) }), privA),
			opts: OpenOptions{Trusted: []ed25519.PublicKey{pubA}, MaxClockSkew: time.Minute}, wantKind: ErrNotYetValid,
			wantMsg: "spec not valid yet (issued 1m30s in the future, allowed clock skew 1m0s)"},
	}
}

func envTestB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// openTestOptions fills the defaults of a rejection case's options.
func (tt *openRejectCase) options() OpenOptions {
	opts := tt.opts
	if opts.Trusted == nil {
		pubA, _ := envTestKey("a")
		opts.Trusted = []ed25519.PublicKey{pubA}
	}
	if opts.Now == nil {
		opts.Now = envTestNowFunc(envTestNow)
	}
	opts.AllowV1 = !tt.noV1
	return opts
}

func TestOpenRejects(t *testing.T) {
	for _, tt := range openRejectCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Open(tt.data, tt.options())
			if err == nil {
				t.Fatalf("Open() = %+v, want error %q", got, tt.wantMsg)
			}
			if !errors.Is(err, tt.wantKind) {
				t.Errorf("Open() error = %v, want errors.Is(err, %v)", err, tt.wantKind)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("Open() error =\n%s\nwant\n%s", err, tt.wantMsg)
			}
		})
	}
}

func TestOpenAccepts(t *testing.T) {
	pubA, privA := envTestKey("a")
	pubB, privB := envTestKey("b")
	_, privC := envTestKey("c")
	good := envTestSeal(t, FormatV2, envTestSpec(), privA)
	tests := []struct {
		name string
		data []byte
		opts OpenOptions
		want []string
	}{
		{name: "surrounding whitespace from kv put", data: append(append([]byte("\n  "), good...), "\n"...),
			opts: OpenOptions{Trusted: []ed25519.PublicKey{pubA}}, want: []string{KeyID(pubA)}},
		{name: "extra untrusted signature is ignored", data: envTestSeal(t, FormatV2, envTestSpec(), privC, privA),
			opts: OpenOptions{Trusted: []ed25519.PublicKey{pubA}}, want: []string{KeyID(pubA)}},
		{name: "duplicate trusted key in options counts once", data: envTestSeal(t, FormatV2, envTestSpec(), privA, privB),
			opts: OpenOptions{Trusted: []ed25519.PublicKey{pubA, pubA, pubB}, Threshold: 2}, want: envTestSortedIDs(pubA, pubB)},
		{name: "issued within clock skew", data: envTestSeal(t, FormatV2, envTestSpecWith(func(s *spec.Spec) { s.IssuedAt = envTestNow.Add(4 * time.Minute) }), privA),
			opts: OpenOptions{Trusted: []ed25519.PublicKey{pubA}}, want: []string{KeyID(pubA)}},
		{name: "insecure mode accepts a bad signature", data: envTestSeal(t, FormatV2, envTestSpec(), privB),
			opts: OpenOptions{Trusted: []ed25519.PublicKey{pubA}, AllowUnsigned: true}, want: nil},
		{name: "insecure mode reports trusted signers", data: envTestSeal(t, FormatV2, envTestSpec(), privB, privA),
			opts: OpenOptions{Trusted: []ed25519.PublicKey{pubA}, AllowUnsigned: true}, want: []string{KeyID(pubA)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Now == nil {
				tt.opts.Now = envTestNowFunc(envTestNow)
			}
			got, err := Open(tt.data, tt.opts)
			if err != nil {
				t.Fatalf("Open() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got.KeyIDs); diff != "" {
				t.Errorf("Open().KeyIDs mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpenKeyRotation(t *testing.T) {
	pubA, _ := envTestKey("a")
	pubB, privB := envTestKey("b")
	byB := envTestSeal(t, FormatV2, envTestSpec(), privB)

	_, err := Open(byB, OpenOptions{Trusted: []ed25519.PublicKey{pubA}, Now: envTestNowFunc(envTestNow)})
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Open(spec by B, trust {A}) error = %v, want %v", err, ErrUnknownKey)
	}
	got, err := Open(byB, OpenOptions{Trusted: []ed25519.PublicKey{pubA, pubB}, Now: envTestNowFunc(envTestNow)})
	if err != nil {
		t.Fatalf("Open(spec by B, trust {A, B}) error = %v", err)
	}
	if diff := cmp.Diff([]string{KeyID(pubB)}, got.KeyIDs); diff != "" {
		t.Errorf("Open(spec by B, trust {A, B}).KeyIDs mismatch (-want +got):\n%s", diff)
	}
}

func TestOpenOptionErrors(t *testing.T) {
	pubA, privA := envTestKey("a")
	pubB, _ := envTestKey("b")
	data := envTestSeal(t, FormatV2, envTestSpec(), privA)
	tests := []struct {
		name    string
		opts    OpenOptions
		wantErr string
	}{
		{name: "no trusted keys", opts: OpenOptions{}, wantErr: "opening spec: no trusted keys configured"},
		{name: "short trusted key", opts: OpenOptions{Trusted: []ed25519.PublicKey{pubA, pubB[:31]}}, wantErr: "opening spec: trusted key 1 is 31 bytes, want 32"},
		{name: "negative threshold", opts: OpenOptions{Trusted: []ed25519.PublicKey{pubA}, Threshold: -1}, wantErr: "opening spec: threshold -1 is negative"},
		{name: "threshold above keys", opts: OpenOptions{Trusted: []ed25519.PublicKey{pubA, pubA}, Threshold: 2},
			wantErr: "opening spec: threshold 2 exceeds the 1 distinct trusted key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Open(data, tt.opts)
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Open() = %+v, %v, want error %q", got, err, tt.wantErr)
			}
		})
	}
}

func TestInspect(t *testing.T) {
	pubA, privA := envTestKey("a")
	_, privC := envTestKey("c")
	tests := []struct {
		name     string
		data     []byte
		wantFmt  Format
		wantSpec *spec.Spec
		wantIDs  []string
	}{
		{name: "v2 by an untrusted key, twice", data: envTestEditJSON(t, envTestSeal(t, FormatV2, envTestSpec(), privC, privA), func(m map[string]any) {
			s := m["signatures"].([]any)
			m["signatures"] = append(s, s[0])
		}),
			wantFmt: FormatV2, wantSpec: envTestSpec(), wantIDs: envTestSortedIDs(pubA, privC.Public().(ed25519.PublicKey))},
		{name: "v2 unsigned", data: envTestSeal(t, FormatV2, envTestSpec()), wantFmt: FormatV2, wantSpec: envTestSpec()},
		{name: "v1", data: envTestSeal(t, FormatV1, envTestSpecV1(), privA), wantFmt: FormatV1, wantSpec: envTestSpecV1()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Inspect(tt.data)
			if err != nil {
				t.Fatalf("Inspect() error = %v", err)
			}
			if got.Format != tt.wantFmt {
				t.Errorf("Inspect().Format = %v, want %v", got.Format, tt.wantFmt)
			}
			if diff := cmp.Diff(tt.wantSpec, got.Spec); diff != "" {
				t.Errorf("Inspect().Spec mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantIDs, got.KeyIDs); diff != "" {
				t.Errorf("Inspect().KeyIDs mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := Inspect([]byte(`{"machines":"W10"}`)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "not valid base64") {
		t.Errorf("Inspect(bad base64) error = %v, want %v", err, ErrMalformed)
	}
}
