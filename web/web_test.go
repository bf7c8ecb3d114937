package web_test

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/web"
)

// get sends a request with method to url (Host set when host is not
// empty) and returns the answer with its body read.
func get(t testing.TB, method, url, host string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// TestPagesAndHeaders: every view's URL serves the page, the assets are
// served with their types, anything else is 404; every answer carries the
// strict CSP and the other security headers; the page is read-only; a
// request that names a host other than loopback (a rebound DNS name) is
// refused unless remote access was allowed.
func TestPagesAndHeaders(t *testing.T) {
	f := newTestFleet(t)
	f.halted(3, time.Now())
	url := f.serve(web.Config{})
	remote := f.serve(web.Config{AllowRemote: true})

	tests := []struct {
		name, method, path, host string
		remote                   bool
		code                     int
		ctype                    string
	}{
		{name: "fleet", method: "GET", path: "/", code: 200, ctype: "text/html; charset=utf-8"},
		{name: "node", method: "GET", path: "/nodes/node-0001.example.net", code: 200, ctype: "text/html; charset=utf-8"},
		{name: "rollouts", method: "GET", path: "/rollouts", code: 200, ctype: "text/html; charset=utf-8"},
		{name: "rollout", method: "GET", path: "/rollouts/web", code: 200, ctype: "text/html; charset=utf-8"},
		{name: "events", method: "GET", path: "/events?since=5m", code: 200, ctype: "text/html; charset=utf-8"},
		{name: "spec", method: "GET", path: "/spec", code: 200, ctype: "text/html; charset=utf-8"},
		{name: "script", method: "GET", path: "/assets/app.js", code: 200, ctype: "text/javascript; charset=utf-8"},
		{name: "style", method: "GET", path: "/assets/app.css", code: 200, ctype: "text/css; charset=utf-8"},
		{name: "head", method: "HEAD", path: "/", code: 200},
		{name: "view", method: "GET", path: "/api/view", code: 200, ctype: "application/json"},
		{name: "no node", method: "GET", path: "/nodes/", code: 404},
		{name: "no rollout", method: "GET", path: "/rollouts/", code: 404},
		{name: "unknown page", method: "GET", path: "/machines", code: 404},
		{name: "unknown api", method: "GET", path: "/api/nodes", code: 404},
		{name: "unknown asset", method: "GET", path: "/assets/nope.js", code: 404},
		{name: "post", method: "POST", path: "/api/view", code: 405},
		{name: "delete", method: "DELETE", path: "/", code: 405},
		{name: "localhost", method: "GET", path: "/", host: "localhost:8080", code: 200},
		{name: "ipv6 loopback", method: "GET", path: "/", host: "[::1]:8080", code: 200},
		{name: "a rebound name", method: "GET", path: "/api/view", host: "attacker.example.net:8080", code: 421},
		{name: "a rebound name, remote allowed", method: "GET", path: "/", host: "attacker.example.net:8080", remote: true, code: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := url
			if tt.remote {
				base = remote
			}
			resp, body := get(t, tt.method, base+tt.path, tt.host)
			if resp.StatusCode != tt.code {
				t.Fatalf("%s %s (host %q) = %s, want %d: %s", tt.method, tt.path, tt.host, resp.Status, tt.code, body)
			}
			if tt.ctype != "" && resp.Header.Get("Content-Type") != tt.ctype {
				t.Errorf("Content-Type = %q, want %q", resp.Header.Get("Content-Type"), tt.ctype)
			}
			want := map[string]string{
				"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
					"base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'",
				"X-Content-Type-Options":       "nosniff",
				"X-Frame-Options":              "DENY",
				"Referrer-Policy":              "no-referrer",
				"Cross-Origin-Opener-Policy":   "same-origin",
				"Cross-Origin-Resource-Policy": "same-origin",
			}
			for h, v := range want {
				if got := resp.Header.Get(h); got != v {
					t.Errorf("%s = %q, want %q", h, got, v)
				}
			}
			if tt.code == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q, want GET, HEAD", resp.Header.Get("Allow"))
			}
		})
	}
}

// TestAssetsAreSelfContained: the page loads nothing from another origin
// and has no inline script, style or event handler (the CSP would block
// them).
func TestAssetsAreSelfContained(t *testing.T) {
	f := newTestFleet(t)
	url := f.serve(web.Config{})
	_, index := get(t, "GET", url+"/", "")
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`<script(\s[^>]*)?>\s*[^<\s]`), // a script with a body
		regexp.MustCompile(`<script(?:\s(?:[^s>]|s[^r>]|sr[^c>])*)?>`),
		regexp.MustCompile(`\sstyle=`),
		regexp.MustCompile(`<style`),
		regexp.MustCompile(`\son[a-z]+=`),
		regexp.MustCompile(`(src|href)="(https?:)?//`),
	} {
		if loc := bad.FindString(index); loc != "" {
			t.Errorf("index.html has %q (%s)", loc, bad)
		}
	}
	for _, asset := range []string{"/", "/assets/app.js", "/assets/app.css"} {
		_, body := get(t, "GET", url+asset, "")
		if m := regexp.MustCompile(`https?://[^\s'"]+`).FindString(body); m != "" {
			t.Errorf("%s refers to %s: the page loads nothing from elsewhere", asset, m)
		}
		if strings.Contains(body, "innerHTML") || strings.Contains(body, "insertAdjacentHTML") || strings.Contains(body, "document.write") {
			t.Errorf("%s writes HTML from strings", asset)
		}
	}
}

func TestLoopback(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:8080", true},
		{"127.0.0.2:8080", true},
		{"localhost:0", true},
		{"LOCALHOST:80", true},
		{"[::1]:8080", true},
		{":8080", false},
		{"0.0.0.0:8080", false},
		{"[::]:8080", false},
		{"192.168.1.10:8080", false},
		{"ops.example.net:8080", false},
		{"127.0.0.1", false}, // no port: not an address net.Listen takes
	}
	for _, tt := range tests {
		if got := web.Loopback(tt.addr); got != tt.want {
			t.Errorf("Loopback(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

// TestViewIsTheFleetLibrary: /api/view's nodes and rollouts are, field for
// field, what package fleet computes from the same buckets at the same
// time (what `mms status --json` and `mms rollout status --json` print),
// with the words the CLI prints for them; the spec is decoded with its
// signers and the keys the nodes trust.
func TestViewIsTheFleetLibrary(t *testing.T) {
	f := newTestFleet(t)
	_, first, failing := f.halted(12, time.Now().UTC())
	url := f.serve(web.Config{})

	var raw struct {
		view
		At time.Time `json:"at"`
	}
	getJSON(t, url+"/api/view", 200, &raw)
	tr, err := fleet.Read(t.Context(), f.js, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := tr.View(raw.At)
	if len(raw.Nodes) != len(want.Nodes) || len(raw.Rollouts) != 1 {
		t.Fatalf("/api/view has %d nodes and %d rollouts, want %d and 1", len(raw.Nodes), len(raw.Rollouts), len(want.Nodes))
	}
	for i, n := range raw.Nodes {
		w, err := json.Marshal(want.Nodes[i])
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(string(w), string(n.Node)); d != "" {
			t.Errorf("node %d differs from fleet's (-fleet +page):\n%s", i, d)
		}
		wn := want.Nodes[i]
		if n.Applied != wn.AppliedCell() || n.Seen != wn.SeenCell() || n.Machines != wn.MachinesCell() || n.Age != fleet.Age(wn.Age) || n.Problem != (len(wn.Problems()) > 0) {
			t.Errorf("node %s cells = %+v, want %q %q %q %q", wn.Identity, n, wn.AppliedCell(), wn.SeenCell(), wn.MachinesCell(), fleet.Age(wn.Age))
		}
	}
	w, err := json.Marshal(want.Rollouts[0])
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(w), string(raw.Rollouts[0].Rollout)); d != "" {
		t.Errorf("rollout differs from fleet's (-fleet +page):\n%s", d)
	}
	r := raw.Rollouts[0]
	web2 := f.op.Spec.Machines[0].Checksum[:12]
	wantStatus := "HALTED at wave 1: node " + first + ": version 2.0.0 (" + web2 + ") unhealthy: not ready within 30s"
	if r.Status != wantStatus || r.Versions != "1.0.0 → "+web2 || r.Policy != "waves 1, 10%, 100%, pause 5m0s" || r.Headline != "web: 1.0.0 → "+web2+"  waves 1, 10%, 100%, pause 5m0s" {
		t.Errorf("rollout lines = %q / %q / %q / %q, want %q", r.Headline, r.Versions, r.Policy, r.Status, wantStatus)
	}
	if raw.Counts.Nodes != 12 || raw.Counts.Flags[fleet.FlagFailed] != 12 || raw.Spec.Serial != 7 || raw.Spec.State != "live" {
		t.Errorf("counts %+v, spec %+v: want 12 nodes, all failed, serial 7", raw.Counts, raw.Spec)
	}

	var detail struct {
		Keys []struct {
			KeyID     string `json:"key_id"`
			Signed    bool   `json:"signed"`
			TrustedBy int    `json:"trusted_by"`
		} `json:"keys"`
		Reporting  int            `json:"reporting"`
		Thresholds map[string]int `json:"thresholds"`
		Entries    []struct {
			Name    string        `json:"name"`
			Rollout *spec.Rollout `json:"rollout"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(raw.SpecDetail, &detail); err != nil {
		t.Fatal(err)
	}
	if len(detail.Keys) != 1 || detail.Keys[0].KeyID != f.keyID || !detail.Keys[0].Signed || detail.Keys[0].TrustedBy != 12 || detail.Reporting != 12 ||
		detail.Thresholds["1"] != 12 || len(detail.Entries) != 2 || detail.Entries[0].Name != "web" || detail.Entries[0].Rollout == nil {
		t.Errorf("spec_detail = %s, want key %s signed and trusted by 12 of 12, entries web (with its rollout) and db", raw.SpecDetail, f.keyID)
	}

	// One node in full: what `mms status NODE` prints.
	var node struct {
		Node struct {
			Node json.RawMessage `json:"node"`
		} `json:"node"`
		Detail fleet.Detail `json:"detail"`
		Keys   []struct {
			KeyID  string `json:"key_id"`
			Signed bool   `json:"signed"`
		} `json:"keys"`
		Rollouts []struct {
			Machine string            `json:"machine"`
			Wave    int               `json:"wave"`
			Node    fleet.RolloutNode `json:"node"`
			Halted  bool              `json:"halted"`
		} `json:"rollouts"`
	}
	getJSON(t, url+"/api/nodes/"+failing, 200, &node)
	found, err := fleet.Find(want.Nodes, failing)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(found.Detail(raw.At), node.Detail); d != "" && !strings.Contains(d, "ago") {
		t.Errorf("detail of %s differs from fleet's (-fleet +page):\n%s", failing, d)
	}
	var db fleet.EntryRow
	for _, e := range node.Detail.Entries {
		if e.Name == "db" {
			db = e
		}
	}
	if db.Outcome != "failed" || db.Reason != "fetch https://repo.example.net/db-5.1.0.tar.gz: 404 Not Found" {
		t.Errorf("%s's db entry = %+v, want failed with the fetch error", failing, db)
	}
	if len(node.Keys) != 1 || node.Keys[0].KeyID != f.keyID || !node.Keys[0].Signed {
		t.Errorf("%s's keys = %+v, want %s, which signed the live spec", failing, node.Keys, f.keyID)
	}
	if len(node.Rollouts) != 1 || node.Rollouts[0].Machine != "web" || !node.Rollouts[0].Halted || node.Rollouts[0].Node.State != fleet.StateHeld {
		t.Errorf("%s's rollouts = %+v, want held in the halted web rollout", failing, node.Rollouts)
	}

	var missing struct {
		Error string `json:"error"`
	}
	getJSON(t, url+"/api/nodes/nobody.example.net", 404, &missing)
	if !strings.Contains(missing.Error, `no status document for "nobody.example.net"`) || !strings.Contains(missing.Error, first) {
		t.Errorf("/api/nodes/nobody.example.net error = %q, want it to name the agents that report", missing.Error)
	}
}

// TestSpecDetailHidesSecrets: a v1 entry's username and password and the
// password in a source URL never reach the page; the page says there are
// credentials.
func TestSpecDetailHidesSecrets(t *testing.T) {
	f := newTestFleet(t)
	e := entry("web", "1.0.0")
	e.Source = "https://ops:hunter2@repo.example.net/web-1.0.0.tar.gz"
	e.Username, e.Password = "deploy", "s3cret-pass"
	env, err := packer.Seal(packer.FormatV1, &spec.Spec{Machines: []spec.Machine{e}}, f.priv)
	if err != nil {
		t.Fatal(err)
	}
	f.putEnvelope(env)
	f.putDoc(f.doc("web1", time.Now()))
	url := f.serve(web.Config{})
	_, body := get(t, "GET", url+"/api/view", "")
	for _, secret := range []string{"hunter2", "s3cret-pass", `"deploy"`} {
		if strings.Contains(body, secret) {
			t.Errorf("/api/view shows %s:\n%s", secret, body)
		}
	}
	if !strings.Contains(body, `"source":"https://ops:xxxxx@repo.example.net/web-1.0.0.tar.gz"`) || !strings.Contains(body, `"credentials":true`) {
		t.Errorf("/api/view lacks the redacted source and the credentials mark:\n%s", body)
	}
}

// TestUpdatesFollowTheBuckets: a page's stream gets the view at once and
// again after a status document or the spec changes; a node's stream
// follows that node, from "no such node" to its document.
func TestUpdatesFollowTheBuckets(t *testing.T) {
	f := newTestFleet(t)
	f.halted(3, time.Now())
	url := f.serve(web.Config{})
	all := openSSE(t, url+"/api/updates")
	one := openSSE(t, url+"/api/updates?node=late.example.net")

	decode := func(ev sseEvent) view {
		t.Helper()
		var v view
		if ev.kind != "view" {
			t.Fatalf("event %q, want view", ev.kind)
		}
		if err := json.Unmarshal([]byte(ev.data), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := decode(all.next(t)); len(v.Nodes) != 3 || v.Spec.Serial != 7 {
		t.Fatalf("first view has %d nodes, serial %d; want 3 and 7", len(v.Nodes), v.Spec.Serial)
	}
	var node struct {
		Error string `json:"error"`
		Node  *struct {
			Applied string `json:"applied"`
		} `json:"node"`
	}
	if ev := one.next(t); ev.kind != "node" || json.Unmarshal([]byte(ev.data), &node) != nil || node.Node != nil || !strings.Contains(node.Error, "late.example.net") {
		t.Fatalf("first node event = %+v, want one saying there is no late.example.net", ev)
	}

	f.putDoc(f.doc("late.example.net", time.Now()))
	for v := decode(all.next(t)); len(v.Nodes) != 4; v = decode(all.next(t)) {
	}
	for {
		if ev := one.next(t); json.Unmarshal([]byte(ev.data), &node) == nil && node.Node != nil {
			break
		}
	}
	if node.Node.Applied != "7" {
		t.Errorf("late.example.net applied = %q, want 7", node.Node.Applied)
	}

	f.putSpec(8, entry("web", "3.0.0"))
	for v := decode(all.next(t)); v.Spec.Serial != 8; v = decode(all.next(t)) {
	}
}

// TestWaitsForTheStatusBucket: without a status bucket the page says why,
// and once an agent creates it and writes, the page shows the node.
func TestWaitsForTheStatusBucket(t *testing.T) {
	srv := natstest.RunJetStream(t)
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	f := &testFleet{t: t, nc: nc, js: js}
	var pub []byte
	if pub, f.priv, err = packer.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	f.keyID = packer.KeyID(pub)
	url := f.serve(web.Config{})
	var v view
	getJSON(t, url+"/api/view", 200, &v)
	if !strings.Contains(v.Error, nodestatus.Bucket) {
		t.Fatalf("view without a status bucket: error %q, want it to name %s", v.Error, nodestatus.Bucket)
	}
	if f.status, err = js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: nodestatus.Bucket, History: 1, MaxValueSize: nodestatus.MaxDocumentSize}); err != nil {
		t.Fatal(err)
	}
	f.op = &packer.Opened{Spec: &spec.Spec{Serial: 1}}
	f.putDoc(f.doc("first.example.net", time.Now()))
	natstest.Eventually(t, 30*time.Second, func() error {
		v = view{}
		getJSON(t, url+"/api/view", 200, &v)
		if v.Error != "" || len(v.Nodes) != 1 {
			return fmt.Errorf("view: error %q, %d nodes; want first.example.net", v.Error, len(v.Nodes))
		}
		return nil
	})
}

// TestEventsStream: the events stream passes the events the filter keeps,
// as the lines `mms events` prints; a replay needs the events stream and
// says so without it; the query is checked.
func TestEventsStream(t *testing.T) {
	f := newTestFleet(t)
	url := f.serve(web.Config{})

	for _, tt := range []struct{ query, want string }{
		{"since=bogus", `since "bogus": not a duration`},
		{"since=-5m", `since "-5m": must not be negative`},
		{"since=1000h", `since "1000h": at most`},
		{"identity=%zz", "invalid URL escape"},
	} {
		resp, body := get(t, "GET", url+"/api/events?"+tt.query, "")
		if resp.StatusCode != 400 || !strings.Contains(body, tt.want) {
			t.Errorf("/api/events?%s = %s %q, want 400 saying %q", tt.query, resp.Status, body, tt.want)
		}
	}

	noHistory := openSSE(t, url+"/api/events?since=1h")
	if ev := noHistory.next(t); ev.kind != "failure" || !strings.Contains(ev.data, "stream does not exist") {
		t.Errorf("replay without the events stream = %+v, want a failure naming the missing stream", ev)
	}

	live := openSSE(t, url+"/api/events?identity=web1&type=transition")
	if ev := live.next(t); ev.kind != "ready" {
		t.Fatalf("first event %+v, want ready", ev)
	}
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	f.publishEvent("web2", "app", "idle", "busy", at)  // another node: filtered out
	f.publishEvent("web10", "app", "idle", "busy", at) // so is one whose name starts the same
	f.publishEvent("web1", "app", "idle", "<b>busy</b>", at)
	ev := live.next(t)
	var got struct {
		Identity, Machine, Type, What, Line string
		Transition                          bool
	}
	if err := json.Unmarshal([]byte(ev.data), &got); err != nil {
		t.Fatal(err)
	}
	want := fleet.Event{Info: agent.EventInfo{Time: at, Identity: "web1", Machine: "app", Transition: true, Name: "go", From: "idle", To: "<b>busy</b>"}}
	if ev.kind != "event" || got.Identity != "web1" || got.Machine != "app" || got.Type != "transition" || !got.Transition ||
		got.What != "transition go idle -> <b>busy</b>" || got.Line != want.Line() {
		t.Errorf("event = %s %+v, want web1's transition, line %q", ev.kind, got, want.Line())
	}

	// A replay of the events stream, filtered by machine.
	if _, err := f.js.CreateStream(t.Context(), jetstream.StreamConfig{Name: agent.EventsStream, Subjects: []string{agent.EventsSubjects}}); err != nil {
		t.Fatal(err)
	}
	f.publishEvent("web1", "old", "a", "b", at)
	f.publishEvent("web1", "other", "a", "b", at)
	replay := openSSE(t, url+"/api/events?since=1h&machine=old")
	for ev := replay.next(t); ev.kind != "event" || !strings.Contains(ev.data, `"machine":"old"`); ev = replay.next(t) {
		if ev.kind == "event" {
			t.Fatalf("replayed %s, want only machine old", ev.data)
		}
	}
}

// TestStreamsAreCapped: beyond MaxStreams a stream is refused with 503.
func TestStreamsAreCapped(t *testing.T) {
	f := newTestFleet(t)
	f.halted(2, time.Now())
	url := f.serve(web.Config{MaxStreams: 1})
	s := openSSE(t, url+"/api/updates")
	s.next(t)
	resp, body := get(t, "GET", url+"/api/updates", "")
	if resp.StatusCode != 503 || !strings.Contains(body, "too many live streams") {
		t.Errorf("a second stream = %s %q, want 503", resp.Status, body)
	}
}
