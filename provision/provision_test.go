package provision

import (
	"slices"
	"strings"
	"testing"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/manager"
)

func testConfig() Config {
	return Config{
		Listen: "127.0.0.1:0", StoreDir: "/var/lib/nats", Bucket: "MACHINES", Key: "machines",
		StatusBucket: "MACHINES_STATUS", EventsStream: "CHORIA_MACHINE",
		Governors: []string{"downloads"}, ArchiveBuckets: []string{"ARCHIVES"},
		Admin: "UADMIN", Operator: "UOPERATOR",
		Nodes: []Node{{Identity: "web1", NKey: "UWEB1"}, {Identity: "web 2", NKey: "UWEB2"}},
	}
}

func TestRenderRefusesBadInput(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{name: "bucket with a dot", edit: func(c *Config) { c.Bucket = "A.B" }, wantErr: `bucket "A.B"`},
		{name: "governor with a wildcard", edit: func(c *Config) { c.Governors = []string{"a>"} }, wantErr: `governor "a>": must match`},
		{name: "two nodes, one status key", edit: func(c *Config) { c.Nodes = append(c.Nodes, Node{Identity: "web1", NKey: "UX"}) }, wantErr: `node "web1" is listed twice`},
		{name: "identity too long", edit: func(c *Config) { c.Nodes = append(c.Nodes, Node{Identity: strings.Repeat("a", 256), NKey: "UX"}) }, wantErr: "identity is 256 bytes, more than the 255 allowed"},
		{name: "bad listen", edit: func(c *Config) { c.Listen = "nowhere" }, wantErr: `listen "nowhere"`},
		{name: "no admin", edit: func(c *Config) { c.Admin = "" }, wantErr: "admin and operator nkeys are required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			tt.edit(&c)
			if _, err := Render(c); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Render() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestNodePermissionsAreNarrow: a node may write only its own status key
// and nothing in the spec bucket, and may not manage any stream.
func TestNodePermissionsAreNarrow(t *testing.T) {
	c := testConfig()
	p := NodePermissions(c, c.Nodes[1])
	for _, s := range p.Publish {
		switch {
		case strings.HasPrefix(s, "$KV.") && s != "$KV.MACHINES_STATUS.web=202":
			t.Errorf("node may publish %s", s)
		case s == ">" || strings.Contains(s, "STREAM.CREATE") || strings.Contains(s, "STREAM.UPDATE") || strings.Contains(s, "STREAM.DELETE") || strings.Contains(s, "STREAM.PURGE"):
			t.Errorf("node may publish %s", s)
		case strings.Contains(s, "MSG.DELETE") && s != "$JS.API.STREAM.MSG.DELETE.MMS_GOVERNOR_downloads":
			t.Errorf("node may delete messages with %s", s)
		}
	}
	if !slices.Contains(p.Publish, "$KV.MACHINES_STATUS.web=202") {
		t.Errorf("node may not write its own status key: %v", p.Publish)
	}
	text, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, `# node "web 2": status key web=202`) || strings.Contains(text, " $") {
		t.Errorf("rendered configuration:\n%s", text)
	}
}

// TestRequestsOperatorOnly: the operator may send transition requests
// (mms machine transition) and plan requests (mms plan); a node may hear
// them and answer each once, never send one.
func TestRequestsOperatorOnly(t *testing.T) {
	c := testConfig()
	op := OperatorPermissions(c)
	for _, subject := range []string{agent.TransitionRequestSubject, manager.PlanSubject} {
		if !slices.Contains(op.Publish, subject) {
			t.Errorf("operator may not publish %s: %v", subject, op.Publish)
		}
		for _, n := range c.Nodes {
			p := NodePermissions(c, n)
			if slices.Contains(p.Publish, subject) || slices.ContainsFunc(p.Publish, func(s string) bool { return s == "mms.>" || s == "mms.machine.>" || s == "mms.spec.>" }) {
				t.Errorf("node %q may publish %s: %v", n.Identity, subject, p.Publish)
			}
			if !slices.Contains(p.Subscribe, subject) || !p.Responses {
				t.Errorf("node %q may not hear and answer %s: subscribe %v, responses %v", n.Identity, subject, p.Subscribe, p.Responses)
			}
		}
	}
}
