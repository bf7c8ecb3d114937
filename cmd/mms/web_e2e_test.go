package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/internal/browsertest"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// webURL finds the page's URL in `mms web`'s first line.
var webURL = regexp.MustCompile(`the fleet page is at (http://\S+/) `)

// TestWebPageAgainstAgents runs three real agent processes and rolls a
// version out that fails its health gate on the node of wave 1 (the
// rollout halts), next to an entry whose archive is missing on one node
// (a failed entry). Then `mms web` (the built binary) serves the fleet:
// its JSON is what `mms status --json` and `mms rollout status --json`
// print, and headless Chromium shows every view as a person sees it — the
// nodes, the failed entry's reason, the halted wave, the spec and its
// signer, the events — and follows a put while the page is open. It saves
// screenshots ($MMS_SCREENSHOTS names a directory to keep them in).
func TestWebPageAgainstAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three agent processes and a browser")
	}
	started := time.Now()
	mmsBinary(t) // built before the test changes directory
	ctx := browsertest.New(t, 1360, 820)
	shots := t.TempDir()
	if dir := os.Getenv("MMS_SCREENSHOTS"); dir != "" {
		var err error
		if shots, err = filepath.Abs(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f := newOperatorFixture(t)
	pubHex := strings.TrimSpace(readFile(t, f.pub))
	pub, err := packer.ParsePublicKey(pubHex)
	if err != nil {
		t.Fatal(err)
	}

	// Three agents: the first with the embedded server. A 5s heartbeat
	// leaves the page and the CLI time to agree on every document.
	ids := []string{"edge-1.example.net", "edge-2.example.net", "edge-3.example.net"}
	common := []string{"--public-key", pubHex, "--allow-http", "--status-interval", "5s"}
	state := func(i int) string { return filepath.Join(f.dir, fmt.Sprintf("state-%d", i)) }
	first := startMMS(t, nil, append([]string{"agent", "--state-dir", state(0), "--identity", ids[0], "--listen", "127.0.0.1:0"}, common...)...)
	waitFor(t, first.stderr, "listening on")
	conn := loginOf(t, state(0)).flags()
	for i := 1; i < len(ids); i++ {
		startMMS(t, nil, append(append([]string{"agent", "--state-dir", state(i), "--identity", ids[i]}, conn...), common...)...)
	}
	for _, id := range ids {
		pollStatus(t, conn, id, func(d *nodestatus.Document) error {
			if d.Seen == nil {
				return fmt.Errorf("%s has not reported yet", id)
			}
			return nil
		})
	}
	serial := uint64(time.Now().Unix())
	put := func(wait bool, entries ...spec.Machine) {
		t.Helper()
		writeMachines(t, f.dir, entries...)
		serial++
		env := mmsOK(t, "", "pack", "machines.json", "--key-file", f.keyFile, "--allow-http", "--serial", fmt.Sprint(serial)).stdout
		args := append([]string{"put"}, conn...)
		if wait {
			args = append(args, "--wait", "60s")
		}
		mmsOK(t, env, args...)
	}
	waves := []string{"1", "100%"}
	gated := func(e spec.Machine) spec.Machine {
		e.Health = &spec.Health{States: []string{"ready"}, Within: spec.Duration(3 * time.Second)}
		e.Rollout = &spec.Rollout{Waves: waves, Pause: spec.Duration(time.Second)}
		return e
	}

	// web 1.0.0 everywhere; then 3.0.0, which never gets ready, in waves,
	// and db, whose archive is missing, on one node of the last wave.
	put(true, f.repo.publish(t, "web", "1.0.0"))
	v3 := gated(f.repo.publishCheck(t, "web", "3.0.0", "exit 1"))
	wave1 := rollout.Assign(ids, "web", v3.Checksum, mustParseWaves(t, waves))[0][0]
	failing := ids[slices.IndexFunc(ids, func(id string) bool { return id != wave1 })]
	db := f.repo.publish(t, "db", "1.0.0")
	db.Source += ".gone"
	db.Match = "identity('^" + strings.TrimSuffix(failing, ".example.net") + "')"
	put(false, v3, db)
	unhealthy := "version 3.0.0 (" + v3.Checksum[:12] + ") unhealthy: not ready within 3s"
	halted := "HALTED at wave 1: node " + wave1 + ": " + unhealthy
	for _, id := range ids {
		pollStatus(t, conn, id, func(d *nodestatus.Document) error {
			var web, dbOK bool
			for _, e := range d.Entries {
				switch {
				case e.Name == "web" && id == wave1:
					web = e.Outcome == "rolled_back"
				case e.Name == "web":
					web = e.Outcome == "held" && strings.Contains(e.Reason, "rollout halted at wave 1")
				case e.Name == "db" && id == failing:
					dbOK = e.Outcome == "failed"
				case e.Name == "db":
					dbOK = e.Outcome == "skipped"
				}
			}
			if !web || !dbOK {
				return fmt.Errorf("%s: web not rolled back or held, or db not failed or skipped yet: %+v", id, d.Entries)
			}
			return nil
		})
	}

	// mms web, the built binary, on a free loopback port.
	page := startMMS(t, nil, append([]string{"web", "--listen", "127.0.0.1:0"}, conn...)...)
	var base string
	natstest.Eventually(t, e2eTimeout, func() error {
		m := webURL.FindStringSubmatch(page.stdout.String())
		if m == nil {
			return fmt.Errorf("no URL from mms web yet; stdout %q, stderr %q", page.stdout.String(), page.stderr.String())
		}
		base = m[1]
		return nil
	})
	base = strings.TrimSuffix(base, "/")

	// The page's data is the CLI's: every node as `mms status --json`
	// prints it, every rollout as `mms rollout status --json` does (ages
	// aside, which depend on the moment of reading).
	natstest.Eventually(t, e2eTimeout, func() error {
		before, err := pageView(t, base)
		if err != nil {
			return err
		}
		status := mms(t, "", append([]string{"status", "--json"}, conn...)...)
		rollouts := mms(t, "", append([]string{"rollout", "status", "--json"}, conn...)...)
		after, err := pageView(t, base)
		if err != nil {
			return err
		}
		if status.code != 0 || rollouts.code != 0 {
			return fmt.Errorf("mms status --json: exit %d %s; mms rollout status --json: exit %d %s", status.code, status.stderr, rollouts.code, rollouts.stderr)
		}
		if d := cmp.Diff(before, after); d != "" {
			return fmt.Errorf("the fleet changed while the CLI read it:\n%s", d)
		}
		var cliNodes, cliRollouts []map[string]any
		if err := json.Unmarshal([]byte(status.stdout), &cliNodes); err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(rollouts.stdout), &cliRollouts); err != nil {
			return err
		}
		for _, n := range cliNodes {
			delete(n, "age_seconds")
		}
		if d := cmp.Diff(cliNodes, after.Nodes); d != "" {
			return fmt.Errorf("/api/view nodes differ from mms status --json (-cli +page):\n%s", d)
		}
		if d := cmp.Diff(cliRollouts, after.Rollouts); d != "" {
			return fmt.Errorf("/api/view rollouts differ from mms rollout status --json (-cli +page):\n%s", d)
		}
		return nil
	})

	console := browsertest.CollectConsole(t, ctx)
	show := func(path string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(base+path)); err != nil {
			t.Fatalf("open %s: %v", path, err)
		}
	}
	see := func(what, expr, want string) {
		t.Helper()
		var got string
		natstest.Eventually(t, e2eTimeout, func() error {
			var err error
			if got, err = chromedp.Run(ctx, chromedp.Evaluate[string](expr)); err != nil {
				return err
			}
			if !strings.Contains(got, want) {
				return fmt.Errorf("%s: the page shows %q, want %q in it", what, got, want)
			}
			return nil
		})
	}
	shoot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS("body"))) // the page, not the empty window below it
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := func(sel string) string {
		return `[...document.querySelectorAll(` + "`" + sel + "`" + `)].map(e => e.innerText).join(' | ')`
	}

	// The fleet: every node, the failed one with its reason, counts.
	show("/")
	see("fleet rows", text("#nodes tbody tr"), ids[0])
	for _, id := range ids {
		see("fleet row of "+id, text(`#nodes tr[data-identity="`+id+`"] td.id`), id)
	}
	see("the held node's message", text(`#nodes tr[data-identity="`+failing+`"] td.msg`), "web held: rollout halted at wave 1 (node "+wave1)
	see("the failing node's flag", `document.querySelector('#nodes tr[data-identity="`+failing+`"] .badge').textContent + ': ' + document.querySelector('#nodes tr[data-identity="`+failing+`"] .badge').title`,
		"failed: web held: rollout halted at wave 1")
	see("the failing node's flag", `document.querySelector('#nodes tr[data-identity="`+failing+`"] .badge').title`, "; db failed: ")
	see("counts", text("#counts .count"), "3\nnodes")
	shoot("fleet.png")

	// A node: the failed entry and its reason, its trusted key.
	show("/nodes/" + failing)
	see("the failed entry", text(`#entries tr[data-entry="db"]`), "failed")
	see("the failed entry's reason", text(`#entries tr[data-entry="db"] td.msg`), "install: fetch "+db.Source+": HTTP 404 from ")
	see("the trusted key", text("#keys tbody tr"), packer.KeyID(pub)+"\tyes")
	see("the node's place in the rollout", text("#node-rollouts tbody tr"), "held")
	shoot("node.png")

	// The rollouts: halted at wave 1, where and why, the node rolled back.
	show("/rollouts")
	see("the halt", text(`.rollout[data-machine="web"] .status`), halted)
	see("the halted wave", text(`.rollout[data-machine="web"] .wave.halted-here h3`), "Wave 1")
	see("the rolled back node", `document.querySelector('.wave[data-wave="1"] .rnode').dataset.identity + ' ' + document.querySelector('.wave[data-wave="1"] .rnode').dataset.state`, wave1+" rolled_back")
	see("the versions", text(`.rollout[data-machine="web"] .versions`), "1.0.0 → "+v3.Checksum[:12])
	shoot("rollouts.png")

	// The spec: serial, the signer, trusted by every node, the entries.
	show("/spec")
	see("the serial", text("#spec-facts"), fmt.Sprintf("Serial\n%d\n", serial))
	see("the signer", text("#spec-keys tbody tr"), packer.KeyID(pub)+"\tyes\t3 of 3 nodes")
	see("the entries", text("#spec-entries tbody tr"), "db")
	shoot("spec.png")

	// Events: the agents' events of the last hour, filtered by machine.
	show("/events?since=1h&machine=web")
	see("replayed events", text("#events tbody tr"), "web")
	see("only web", `String([...document.querySelectorAll('#events tbody tr[data-identity] td:nth-child(3)')].every(td => td.textContent === 'web'))`, "true")
	shoot("events.png")

	// A put while the page is open changes it, without a reload.
	show("/rollouts")
	see("the halt", text(`.rollout[data-machine="web"] .status`), "HALTED")
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.stayed = true`)); err != nil {
		t.Fatal(err)
	}
	v2 := gated(f.repo.publish(t, "web", "2.0.0"))
	put(false, v2)
	see("the new serial", `document.querySelector('#specline').textContent`, fmt.Sprintf("serial %d", serial))
	see("the new rollout", text(`.rollout[data-machine="web"] .versions`), v2.Checksum[:12])
	see("the rollout done", text(`.rollout[data-machine="web"] .status`), "done: every node runs the new version healthy")
	see("no reload", `String(window.stayed)`, "true")
	shoot("rollouts-done.png")

	if p := console.Problems(); len(p) > 0 {
		t.Errorf("the page wrote errors to the console:\n%s", strings.Join(p, "\n"))
	}
	page.signal(t, syscall.SIGTERM)
	if code := page.wait(t); code != 0 {
		t.Errorf("mms web exit code = %d, want 0; stderr:\n%s", code, page.stderr)
	}
	t.Logf("screenshots in %s; the test took %v", shots, time.Since(started).Round(time.Second))
}

// pageData is /api/view's nodes and rollouts as fleet encodes them, ages
// aside.
type pageData struct {
	Nodes, Rollouts []map[string]any
}

// pageView gets /api/view from base.
func pageView(t *testing.T, base string) (pageData, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/api/view", nil)
	if err != nil {
		return pageData{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return pageData{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return pageData{}, err
	}
	var v struct {
		Error string `json:"error"`
		Nodes []struct {
			Node map[string]any `json:"node"`
		} `json:"nodes"`
		Rollouts []struct {
			Rollout map[string]any `json:"rollout"`
		} `json:"rollouts"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return pageData{}, fmt.Errorf("/api/view: %w: %s", err, body)
	}
	if v.Error != "" {
		return pageData{}, fmt.Errorf("/api/view: %s", v.Error)
	}
	var out pageData
	for _, n := range v.Nodes {
		delete(n.Node, "age_seconds")
		out.Nodes = append(out.Nodes, n.Node)
	}
	for _, r := range v.Rollouts {
		out.Rollouts = append(out.Rollouts, r.Rollout)
	}
	if out.Rollouts == nil {
		out.Rollouts = []map[string]any{}
	}
	return out, nil
}
