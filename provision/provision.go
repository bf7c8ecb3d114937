// Package provision renders a least-privilege nats-server configuration for
// an mms fleet: one JetStream account with an admin, an operator and one
// user per node, each authenticated by an nkey and allowed exactly the
// subjects its role needs (see docs/nats-permissions.md). `mms nats-config`
// writes it.
package provision

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/governor"
	"github.com/mms-io/mms/internal/kvname"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/spec"
)

// governorName is the pattern of governor names.
var governorName = regexp.MustCompile(spec.GovernorPattern)

// Config describes the fleet the configuration is for.
type Config struct {
	// Listen is the server's HOST:PORT; port 0 picks a free port.
	Listen string
	// StoreDir is the JetStream store directory.
	StoreDir string
	// Bucket and Key name the spec's KV entry (MACHINES, machines).
	Bucket, Key string
	// StatusBucket is the status KV bucket (MACHINES_STATUS).
	StatusBucket string
	// EventsStream is the stream that keeps machine events (CHORIA_MACHINE).
	EventsStream string
	// Governors are the governors spec entries may name: nodes may take
	// and free their slots. A governor created later needs the
	// configuration regenerated.
	Governors []string
	// ArchiveBuckets are the object stores nats:// sources name: nodes may
	// read them, the operator may write them.
	ArchiveBuckets []string
	// Admin and Operator are the public nkeys of those users.
	Admin, Operator string
	// Nodes are the agents, one user each.
	Nodes []Node
	// Topology is the server's name, cluster, JetStream domain and
	// leafnode links to edge sites (site.go); the zero value is a single
	// server.
	Topology Topology
}

// Node is one agent's user.
type Node struct {
	// Identity is the agent's --identity; its status key derives from it.
	Identity string
	// NKey is the user's public nkey.
	NKey string
}

// Permissions are one user's publish and subscribe allow lists. Nothing
// else is allowed.
type Permissions struct {
	Publish, Subscribe []string
	// Responses allows one reply to each message the user received with a
	// reply subject (the nudge's answer), and nothing else on inboxes.
	Responses bool
}

// Validate checks the names the subjects are built from.
func (c Config) Validate() error {
	var errs []error
	for _, b := range append([]string{c.Bucket, c.StatusBucket}, c.ArchiveBuckets...) {
		if err := kvname.Bucket(b); err != nil {
			errs = append(errs, fmt.Errorf("bucket %q: %w", b, err))
		}
	}
	if err := kvname.Key(c.Key); err != nil {
		errs = append(errs, fmt.Errorf("key %q: %w", c.Key, err))
	}
	if err := kvname.Bucket(c.EventsStream); err != nil {
		errs = append(errs, fmt.Errorf("events stream %q: %w", c.EventsStream, err))
	}
	for _, g := range c.Governors {
		if !governorName.MatchString(g) {
			errs = append(errs, fmt.Errorf("governor %q: must match %s", g, spec.GovernorPattern))
		}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen %q: %w", c.Listen, err))
	}
	if c.Admin == "" || c.Operator == "" {
		errs = append(errs, errors.New("admin and operator nkeys are required"))
	}
	seen := map[string]string{}
	for _, n := range c.Nodes {
		if strings.TrimSpace(n.Identity) == "" || n.NKey == "" {
			errs = append(errs, fmt.Errorf("node %q: identity and nkey are required", n.Identity))
			continue
		}
		if err := nodestatus.CheckIdentity(n.Identity); err != nil {
			errs = append(errs, fmt.Errorf("node %q: %w", n.Identity, err))
			continue
		}
		// Status keys are one per identity (nodestatus.Key is reversible):
		// the same key twice is the same node twice.
		key := nodestatus.Key(n.Identity)
		if _, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("node %q is listed twice", n.Identity))
		}
		seen[key] = n.Identity
	}
	if err := c.Topology.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// jsAPI returns "$JS.API." + the parts joined by dots.
func jsAPI(parts ...string) string { return "$JS.API." + strings.Join(parts, ".") }

// readStream is what reading a stream needs: its info, direct and stored
// message gets, ordered consumers (KV watch, object reads) and their flow
// control.
func readStream(stream string) []string {
	return []string{
		jsAPI("STREAM", "INFO", stream),
		jsAPI("STREAM", "MSG", "GET", stream),
		jsAPI("DIRECT", "GET", stream, ">"),
		jsAPI("DIRECT", "GET", stream),
		jsAPI("CONSUMER", "CREATE", stream),
		jsAPI("CONSUMER", "CREATE", stream, ">"),
		jsAPI("CONSUMER", "INFO", stream, "*"),
		jsAPI("CONSUMER", "DELETE", stream, "*"),
		"$JS.FC." + stream + ".>",
	}
}

// NodePermissions are what the agent of node needs: read the spec and the
// archives, write its own status key (nodestatus.Key of its identity, the
// key readers take its identity from) and nothing else in the status
// bucket, publish machine events, take and free governor slots, and hear
// (and answer) reconcile nudges, transition requests and plan requests,
// which it may not send.
func NodePermissions(c Config, n Node) Permissions {
	pub := []string{jsAPI("INFO")}
	pub = append(pub, readStream("KV_"+c.Bucket)...)
	pub = append(pub, readStream("KV_"+c.StatusBucket)...)
	pub = append(pub, "$KV."+c.StatusBucket+"."+nodestatus.Key(n.Identity))
	for _, b := range c.ArchiveBuckets {
		pub = append(pub, readStream("OBJ_"+b)...)
	}
	for _, g := range c.Governors {
		pub = append(pub,
			governor.Subject(g),
			jsAPI("STREAM", "INFO", governor.Stream(g)),
			jsAPI("STREAM", "MSG", "DELETE", governor.Stream(g)))
	}
	pub = append(pub, agent.EventsSubjects)
	return Permissions{
		Publish:   pub,
		Subscribe: []string{"_INBOX.>", manager.NudgeSubject, agent.TransitionRequestSubject, manager.PlanSubject},
		Responses: true,
	}
}

// OperatorPermissions are what the person who publishes specs needs day
// to day: write the spec key, upload archives, read status and events,
// nudge agents, fire transitions on them (mms machine transition), ask
// them for plans (mms plan), see governors. Creating or deleting buckets, streams and
// governors is the admin's.
func OperatorPermissions(c Config) Permissions {
	pub := []string{
		jsAPI("INFO"),
		jsAPI("STREAM", "NAMES"),
		jsAPI("STREAM", "LIST"),
		"$KV." + c.Bucket + "." + c.Key,
		manager.NudgeSubject,
		agent.TransitionRequestSubject,
		manager.PlanSubject,
		"$JS.ACK." + c.EventsStream + ".>",
		jsAPI("CONSUMER", "MSG", "NEXT", c.EventsStream, "*"),
	}
	for _, s := range []string{"KV_" + c.Bucket, "KV_" + c.StatusBucket, c.EventsStream} {
		pub = append(pub, readStream(s)...)
	}
	for _, b := range c.ArchiveBuckets {
		obj := "OBJ_" + b
		pub = append(pub, readStream(obj)...)
		pub = append(pub, "$O."+b+".>", jsAPI("STREAM", "PURGE", obj))
	}
	for _, g := range c.Governors {
		pub = append(pub, jsAPI("STREAM", "INFO", governor.Stream(g)))
	}
	return Permissions{
		Publish:   pub,
		Subscribe: []string{"_INBOX.>", agent.EventsSubjects},
	}
}

// AdminPermissions allow everything in the account: the admin creates the
// buckets, streams and governors.
func AdminPermissions() Permissions {
	return Permissions{Publish: []string{">"}, Subscribe: []string{">"}}
}

// Render returns the configuration text. Every value is quoted, so
// nothing in it is read as a variable.
func Render(c Config) (string, error) {
	if err := c.Validate(); err != nil {
		return "", fmt.Errorf("nats config: %w", err)
	}
	host, port, _ := net.SplitHostPort(c.Listen)
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", fmt.Errorf("nats config: listen %q: port %q is not a number from 0 to 65535", c.Listen, port)
	}
	if p == 0 {
		p = -1
	}
	var b strings.Builder
	b.WriteString("# A least-privilege nats-server configuration for an mms fleet, written by\n")
	b.WriteString("# `mms nats-config` (see docs/nats-permissions.md). Users authenticate with\n")
	b.WriteString("# nkeys; each may use only the subjects listed for it.\n")
	fmt.Fprintf(&b, "host: %s\nport: %d\n", quote(host), p)
	b.WriteString(jetstreamBlock(c))
	renderTopology(&b, c)
	b.WriteString("accounts {\n  MMS {\n    jetstream: enabled\n    users: [\n")
	user(&b, "admin: creates buckets, streams and governors", c.Admin, AdminPermissions())
	user(&b, "operator: publishes specs and archives, reads status and events, nudges agents, fires transitions, asks for plans", c.Operator, OperatorPermissions(c))
	nodes := slices.Clone(c.Nodes)
	slices.SortFunc(nodes, func(a, b Node) int { return strings.Compare(a.Identity, b.Identity) })
	for _, n := range nodes {
		user(&b, fmt.Sprintf("node %s: status key %s", strconv.Quote(n.Identity), nodestatus.Key(n.Identity)), n.NKey, NodePermissions(c, n))
	}
	siteUsers(&b, c)
	b.WriteString("    ]\n  }\n}\n")
	return b.String(), nil
}

// user writes one user entry.
func user(b *strings.Builder, comment, nkey string, p Permissions) {
	fmt.Fprintf(b, "      # %s\n", strings.ReplaceAll(comment, "\n", " "))
	fmt.Fprintf(b, "      {\n        nkey: %s\n        permissions: {\n", quote(nkey))
	fmt.Fprintf(b, "          publish: { allow: %s }\n", list(p.Publish, "            "))
	fmt.Fprintf(b, "          subscribe: { allow: %s }\n", list(p.Subscribe, "            "))
	if p.Responses {
		b.WriteString("          allow_responses: { max: 1, expires: \"1m\" }\n")
	}
	b.WriteString("        }\n      }\n")
}

// list renders a quoted list of subjects, one a line (indented by indent)
// when there are more than two.
func list(subjects []string, indent string) string {
	q := make([]string, len(subjects))
	for i, s := range subjects {
		q[i] = quote(s)
	}
	if len(q) <= 2 {
		return "[" + strings.Join(q, ", ") + "]"
	}
	return "[\n" + indent + "  " + strings.Join(q, ",\n"+indent+"  ") + "\n" + indent + "]"
}

// quote renders s as a double-quoted configuration string.
func quote(s string) string { return strconv.Quote(s) }
