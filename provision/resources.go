package provision

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/governor"
	"github.com/mms-io/mms/internal/kvname"
	"github.com/mms-io/mms/manager/mmsmanager"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
)

// Kinds of fleet resources, as [Resource.Kind] names them.
const (
	KindSpec     = "spec bucket"
	KindStatus   = "status bucket"
	KindEvents   = "events stream"
	KindArchives = "archives"
	KindGovernor = "governor"
)

// DefaultArchiveBucket is the object store machine archives are uploaded
// to (`mms archive create --upload nats://ARCHIVES`).
const DefaultArchiveBucket = "ARCHIVES"

// DefaultGovernorExpire is how long a governor slot is held at most when
// nothing else is said: a crashed holder's slot frees after it.
const DefaultGovernorExpire = 5 * time.Minute

// MaxReplicas is the most replicas JetStream keeps of a stream.
const MaxReplicas = 5

// Fleet is every JetStream resource an mms fleet uses, with the replicas,
// sizes and ages each gets: the spec bucket, the status bucket, the events
// stream, the archive object stores and the governors. It is the one place
// these settings live: `mms init` applies a fleet's ([Defaults] and its
// flags), the agent's embedded server applies [Embedded], and the
// commands that create one resource on their own (`mms put --create`, `mms
// status --create`, `mms archive create --upload`, `mms governor add`)
// take it from here too.
type Fleet struct {
	// Replicas is how many servers keep a copy of every resource: 1 on a
	// single server, 3 (or 5) on a cluster, so that any one server may die.
	Replicas int
	// Placement, when set, pins every resource to a cluster or to servers
	// with tags.
	Placement *jetstream.Placement
	// SpecBucket is the KV bucket of the signed spec (MACHINES); it keeps
	// SpecHistory revisions of each key, values up to
	// packer.MaxEnvelopeSize, SpecMaxBytes in all.
	SpecBucket   string
	SpecHistory  uint8
	SpecMaxBytes int64
	// StatusMaxBytes caps the status bucket (nodestatus.Bucket): one
	// document per agent, the latest only.
	StatusMaxBytes int64
	// EventsMaxAge and EventsMaxBytes bound the events stream
	// (agent.EventsStream): the oldest events go first.
	EventsMaxAge   time.Duration
	EventsMaxBytes int64
	// ArchiveBuckets are the object stores nats:// sources name, each
	// capped at ArchiveMaxBytes.
	ArchiveBuckets  []string
	ArchiveMaxBytes int64
	// Governors are the fleet's governors (`mms governor add`).
	Governors []Governor
	// Sites are the JetStream domains of the edge sites whose status
	// documents and events this fleet's (the hub's) status bucket and
	// events stream source (see [Fleet.Site]).
	Sites []string
	// HubDomain, when set, makes this the fleet of an edge site: its spec
	// bucket and archive stores are mirrors of the hub's, in the hub's
	// JetStream domain HubDomain, so the site's agents watch and download
	// from their own server; its status bucket and events stream are its
	// own, and the hub sources them.
	HubDomain string
}

// Governor is one governor of a fleet: at most Limit holders at once, a
// slot freed after Expire at the latest.
type Governor struct {
	Name   string
	Limit  int64
	Expire time.Duration
}

// Sizes of a fleet's resources on a NATS deployment ([Defaults]).
const (
	DefaultSpecMaxBytes    = 64 << 20
	DefaultStatusMaxBytes  = 256 << 20
	DefaultEventsMaxAge    = 24 * time.Hour
	DefaultEventsMaxBytes  = 1 << 30
	DefaultArchiveMaxBytes = 2 << 30
	defaultSpecHistory     = 5
)

// Sizes of the resources on the agent's embedded server ([Embedded]),
// whose JetStream store is capped at EmbeddedMaxStore: they leave room
// for governors.
const (
	EmbeddedMaxStore        = 1 << 30
	embeddedSpecMaxBytes    = 16 << 20
	embeddedStatusMaxBytes  = 64 << 20
	embeddedEventsMaxBytes  = 256 << 20
	embeddedArchiveMaxBytes = 512 << 20
)

// Defaults is the fleet `mms init` creates when no flag says otherwise.
// Its Replicas is 0: [Replicas] decides from the server (1 on a single
// server, 3 on a cluster).
func Defaults() Fleet {
	return Fleet{
		SpecBucket:      mmsmanager.DefaultBucket,
		SpecHistory:     defaultSpecHistory,
		SpecMaxBytes:    DefaultSpecMaxBytes,
		StatusMaxBytes:  DefaultStatusMaxBytes,
		EventsMaxAge:    DefaultEventsMaxAge,
		EventsMaxBytes:  DefaultEventsMaxBytes,
		ArchiveBuckets:  []string{DefaultArchiveBucket},
		ArchiveMaxBytes: DefaultArchiveMaxBytes,
	}
}

// Embedded is the fleet of an agent's embedded server: one server, the
// spec in bucket (MACHINES unless the agent was given another), and sizes
// that fit its EmbeddedMaxStore.
func Embedded(bucket string) Fleet {
	f := Defaults()
	f.Replicas = 1
	f.SpecBucket = cmp.Or(bucket, mmsmanager.DefaultBucket)
	f.SpecMaxBytes = embeddedSpecMaxBytes
	f.StatusMaxBytes = embeddedStatusMaxBytes
	f.EventsMaxBytes = embeddedEventsMaxBytes
	f.ArchiveMaxBytes = embeddedArchiveMaxBytes
	return f
}

// Site is the fleet of the edge site with JetStream domain name, fed by
// this fleet (the hub's, in JetStream domain hubDomain): one server, the
// same buckets, stores and governors, with the spec bucket and the
// archive stores mirrored from the hub.
func (f Fleet) Site(hubDomain string) Fleet {
	s := f
	s.Replicas = 1
	s.Placement = nil
	s.Sites = nil
	s.HubDomain = hubDomain
	return s
}

// Validate reports every problem of f at once, naming the setting.
func (f Fleet) Validate() error {
	var errs []error
	if f.Replicas < 1 || f.Replicas > MaxReplicas {
		errs = append(errs, fmt.Errorf("replicas %d: want 1 to %d", f.Replicas, MaxReplicas))
	}
	if err := kvname.Bucket(f.SpecBucket); err != nil {
		errs = append(errs, fmt.Errorf("spec bucket %q: %w", f.SpecBucket, err))
	}
	if f.SpecBucket == nodestatus.Bucket {
		errs = append(errs, fmt.Errorf("spec bucket %q: that is the status bucket", f.SpecBucket))
	}
	if f.SpecHistory < 2 || f.SpecHistory > jetstream.KeyValueMaxHistory {
		errs = append(errs, fmt.Errorf("spec history %d: want 2 to %d (mms rollout undo reads the specs before the live one)", f.SpecHistory, jetstream.KeyValueMaxHistory))
	}
	for _, s := range []struct {
		name string
		n    int64
	}{{"spec max bytes", f.SpecMaxBytes}, {"status max bytes", f.StatusMaxBytes}, {"events max bytes", f.EventsMaxBytes}, {"archives max bytes", f.ArchiveMaxBytes}} {
		if s.n != -1 && s.n < 1<<20 {
			errs = append(errs, fmt.Errorf("%s %d: want at least 1MiB, or -1 for no limit", s.name, s.n))
		}
	}
	if f.SpecMaxBytes > 0 && f.SpecMaxBytes < int64(f.SpecHistory)*packer.MaxEnvelopeSize {
		errs = append(errs, fmt.Errorf("spec max bytes %s: holds fewer than %d revisions of the largest spec (%s)", FormatSize(f.SpecMaxBytes), f.SpecHistory, FormatSize(packer.MaxEnvelopeSize)))
	}
	if f.EventsMaxAge < 0 {
		errs = append(errs, fmt.Errorf("events max age %v: want 0 (no limit) or more", f.EventsMaxAge))
	}
	seen := map[string]bool{}
	for _, b := range f.ArchiveBuckets {
		if err := kvname.Bucket(b); err != nil {
			errs = append(errs, fmt.Errorf("archive bucket %q: %w", b, err))
		}
		if seen[b] {
			errs = append(errs, fmt.Errorf("archive bucket %q: given twice", b))
		}
		seen[b] = true
	}
	govs := map[string]bool{}
	for _, g := range f.Governors {
		if _, err := governor.Config(g.Name, g.Limit, g.Expire, 1); err != nil {
			errs = append(errs, fmt.Errorf("governor %q: %w", g.Name, err))
		}
		if govs[g.Name] {
			errs = append(errs, fmt.Errorf("governor %q: given twice", g.Name))
		}
		govs[g.Name] = true
	}
	sites := map[string]bool{}
	for _, s := range f.Sites {
		if err := checkDomain(s); err != nil {
			errs = append(errs, fmt.Errorf("site %q: %w", s, err))
		}
		if sites[s] {
			errs = append(errs, fmt.Errorf("site %q: given twice", s))
		}
		sites[s] = true
	}
	if f.HubDomain != "" {
		if err := checkDomain(f.HubDomain); err != nil {
			errs = append(errs, fmt.Errorf("hub domain %q: %w", f.HubDomain, err))
		}
		if len(f.Sites) > 0 {
			errs = append(errs, errors.New("a site's fleet has no sites of its own"))
		}
	}
	return errors.Join(errs...)
}

// checkDomain checks a JetStream domain name: it is a token of the
// $JS.<domain>.API subjects.
func checkDomain(d string) error {
	if d == "" {
		return errors.New("empty")
	}
	for _, r := range d {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("character %q: want letters, digits, - and _", r)
		}
	}
	return nil
}

// Resource is one JetStream resource of a fleet and the settings it
// should have.
type Resource struct {
	// Kind is one of the Kind constants.
	Kind string
	// Name is the bucket, store, stream or governor name; Stream the
	// JetStream stream that holds it (KV_MACHINES, OBJ_ARCHIVES, …).
	Name, Stream string
	// Want is what `mms init` sets and `mms init --check` compares.
	Want Settings

	kv     *jetstream.KeyValueConfig
	obj    *jetstream.ObjectStoreConfig
	stream *jetstream.StreamConfig
}

// Settings are what a fleet decides about a resource: where it lives and
// how much it keeps.
type Settings struct {
	Replicas  int
	Placement *jetstream.Placement
	// MaxBytes is the size cap, -1 for none; MaxAge the age cap, 0 for
	// none.
	MaxBytes int64
	MaxAge   time.Duration
	// MaxMsgSize caps one value (0: not decided); History is how many
	// values of each key are kept (0: not decided).
	MaxMsgSize int32
	History    int64
	// MaxMsgs caps the messages (a governor's slots; 0: not decided).
	MaxMsgs int64
	// Subjects are the stream's subjects (empty: not decided).
	Subjects []string
	// Mirror is the stream this one mirrors ("" for none), Sources those
	// it sources, each as "STREAM" or "STREAM in domain D".
	Mirror  string
	Sources []string
}

// Resources returns f's resources in the order they are created: spec
// bucket, status bucket, events stream, archive stores, governors.
func (f Fleet) Resources() ([]Resource, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("fleet resources: %w", err)
	}
	var out []Resource
	spec := jetstream.KeyValueConfig{
		Bucket:       f.SpecBucket,
		Description:  "mms signed desired state",
		History:      f.SpecHistory,
		MaxValueSize: packer.MaxEnvelopeSize,
		MaxBytes:     f.SpecMaxBytes,
		Replicas:     f.Replicas,
		Placement:    f.Placement,
	}
	if f.HubDomain != "" {
		spec.Description = "mms signed desired state, mirrored from the hub (domain " + f.HubDomain + ")"
		spec.Mirror = f.fromHub("KV_" + f.SpecBucket)
	}
	out = append(out, kvResource(KindSpec, spec))

	status := jetstream.KeyValueConfig{
		Bucket:       nodestatus.Bucket,
		Description:  "mms agent status documents, one per agent",
		History:      1,
		MaxValueSize: nodestatus.MaxDocumentSize,
		MaxBytes:     f.StatusMaxBytes,
		Replicas:     f.Replicas,
		Placement:    f.Placement,
	}
	status.Sources = f.fromSites("KV_" + nodestatus.Bucket)
	out = append(out, kvResource(KindStatus, status))

	events := jetstream.StreamConfig{
		Name:        agent.EventsStream,
		Description: "mms machine events (transitions and watcher states)",
		Subjects:    []string{agent.EventsSubjects},
		MaxAge:      f.EventsMaxAge,
		MaxBytes:    f.EventsMaxBytes,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		Replicas:    f.Replicas,
		Placement:   f.Placement,
		Sources:     f.fromSites(agent.EventsStream),
	}
	out = append(out, streamResource(KindEvents, events.Name, events))

	for _, b := range f.ArchiveBuckets {
		if f.HubDomain != "" {
			// nats.go has no object store mirrors: the stream is made as
			// an object store's, a mirror of the hub's.
			mirror := jetstream.StreamConfig{
				Name:         "OBJ_" + b,
				Description:  "mms machine archives, mirrored from the hub (domain " + f.HubDomain + ")",
				MaxBytes:     f.ArchiveMaxBytes,
				Discard:      jetstream.DiscardNew,
				Storage:      jetstream.FileStorage,
				Replicas:     f.Replicas,
				AllowRollup:  true,
				AllowDirect:  true,
				MirrorDirect: true,
				Mirror:       f.fromHub("OBJ_" + b),
			}
			out = append(out, streamResource(KindArchives, b, mirror))
			continue
		}
		obj := jetstream.ObjectStoreConfig{
			Bucket:      b,
			Description: "mms machine archives",
			MaxBytes:    f.ArchiveMaxBytes,
			Replicas:    f.Replicas,
			Placement:   f.Placement,
		}
		out = append(out, objResource(obj))
	}

	for _, g := range f.Governors {
		cfg, err := governor.Config(g.Name, g.Limit, g.Expire, f.Replicas)
		if err != nil {
			return nil, fmt.Errorf("fleet resources: governor %q: %w", g.Name, err)
		}
		cfg.Placement = f.Placement
		out = append(out, streamResource(KindGovernor, g.Name, cfg))
	}
	return out, nil
}

// fromHub is the mirror of the hub's stream.
func (f Fleet) fromHub(stream string) *jetstream.StreamSource {
	return &jetstream.StreamSource{Name: stream, External: &jetstream.ExternalStream{APIPrefix: apiPrefix(f.HubDomain)}}
}

// fromSites are the sources of stream from every site, in the order given.
func (f Fleet) fromSites(stream string) []*jetstream.StreamSource {
	var out []*jetstream.StreamSource
	for _, s := range f.Sites {
		out = append(out, &jetstream.StreamSource{Name: stream, External: &jetstream.ExternalStream{APIPrefix: apiPrefix(s)}})
	}
	return out
}

// apiPrefix is the JetStream API prefix of domain.
func apiPrefix(domain string) string { return "$JS." + domain + ".API" }

func kvResource(kind string, c jetstream.KeyValueConfig) Resource {
	w := Settings{
		Replicas: max(c.Replicas, 1), Placement: c.Placement, MaxBytes: orUnlimited(c.MaxBytes), MaxAge: c.TTL,
		MaxMsgSize: int32(orUnlimited(int64(c.MaxValueSize))), History: int64(max(c.History, 1)),
		Mirror: sourceName(c.Mirror), Sources: sourceNames(c.Sources),
	}
	return Resource{Kind: kind, Name: c.Bucket, Stream: "KV_" + c.Bucket, Want: w, kv: &c}
}

func objResource(c jetstream.ObjectStoreConfig) Resource {
	w := Settings{Replicas: max(c.Replicas, 1), Placement: c.Placement, MaxBytes: orUnlimited(c.MaxBytes), MaxAge: c.TTL}
	return Resource{Kind: KindArchives, Name: c.Bucket, Stream: "OBJ_" + c.Bucket, Want: w, obj: &c}
}

func streamResource(kind, name string, c jetstream.StreamConfig) Resource {
	return Resource{Kind: kind, Name: name, Stream: c.Name, Want: settingsOf(c), stream: &c}
}

// settingsOf reads the settings of a stream's configuration.
func settingsOf(c jetstream.StreamConfig) Settings {
	s := Settings{
		Replicas: max(c.Replicas, 1), Placement: c.Placement, MaxBytes: orUnlimited(c.MaxBytes), MaxAge: c.MaxAge,
		MaxMsgSize: c.MaxMsgSize, History: c.MaxMsgsPerSubject, MaxMsgs: c.MaxMsgs,
		Subjects: slices.Clone(c.Subjects), Mirror: sourceName(c.Mirror), Sources: sourceNames(c.Sources),
	}
	if s.MaxMsgs < 0 {
		s.MaxMsgs = 0
	}
	return s
}

// orUnlimited maps JetStream's "no limit" values (0 and any negative
// number) to -1.
func orUnlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// sourceName says which stream s is: "STREAM" or "STREAM in domain D".
func sourceName(s *jetstream.StreamSource) string {
	if s == nil {
		return ""
	}
	name := s.Name
	if s.External != nil && s.External.APIPrefix != "" {
		d := strings.TrimSuffix(strings.TrimPrefix(s.External.APIPrefix, "$JS."), ".API")
		return name + " in domain " + d
	}
	return name
}

func sourceNames(ss []*jetstream.StreamSource) []string {
	var out []string
	for _, s := range ss {
		out = append(out, sourceName(s))
	}
	slices.Sort(out)
	return out
}

// Change is one setting of a resource that is not what the fleet wants.
type Change struct {
	// Setting names it ("replicas", "max bytes", …); Have and Want are
	// its values, for a person.
	Setting, Have, Want string
}

// String renders c as "replicas 1 → 3".
func (c Change) String() string { return c.Setting + " " + c.Have + " → " + c.Want }

// diff lists the settings of have that differ from want; a setting want
// leaves undecided (zero) is not compared.
func diff(want, have Settings) []Change {
	var out []Change
	add := func(setting string, differs bool, h, w string) {
		if differs {
			out = append(out, Change{Setting: setting, Have: h, Want: w})
		}
	}
	add("replicas", want.Replicas != have.Replicas, fmt.Sprint(have.Replicas), fmt.Sprint(want.Replicas))
	add("placement", placementText(want.Placement) != placementText(have.Placement), placementText(have.Placement), placementText(want.Placement))
	add("max bytes", want.MaxBytes != have.MaxBytes, sizeOrNone(have.MaxBytes), sizeOrNone(want.MaxBytes))
	add("max age", want.MaxAge != have.MaxAge, ageOrNone(have.MaxAge), ageOrNone(want.MaxAge))
	add("max value size", want.MaxMsgSize != 0 && want.MaxMsgSize != have.MaxMsgSize, sizeOrNone(int64(have.MaxMsgSize)), sizeOrNone(int64(want.MaxMsgSize)))
	add("history", want.History != 0 && want.History != have.History, fmt.Sprint(have.History), fmt.Sprint(want.History))
	add("slots", want.MaxMsgs != 0 && want.MaxMsgs != have.MaxMsgs, fmt.Sprint(have.MaxMsgs), fmt.Sprint(want.MaxMsgs))
	add("subjects", len(want.Subjects) > 0 && !slices.Equal(want.Subjects, have.Subjects), listOrNone(have.Subjects), listOrNone(want.Subjects))
	add("mirror", want.Mirror != have.Mirror, cmp.Or(have.Mirror, "none"), cmp.Or(want.Mirror, "none"))
	add("sources", !slices.Equal(want.Sources, have.Sources), listOrNone(have.Sources), listOrNone(want.Sources))
	return out
}

// String describes the settings for a person: "history 5, values ≤ 1MiB,
// ≤ 64MiB in all".
func (s Settings) String() string {
	var parts []string
	if s.MaxMsgs > 0 {
		parts = append(parts, fmt.Sprintf("%d slots", s.MaxMsgs))
	}
	if s.History > 0 {
		parts = append(parts, fmt.Sprintf("history %d", s.History))
	}
	if s.MaxMsgSize > 0 {
		parts = append(parts, "values ≤ "+FormatSize(int64(s.MaxMsgSize)))
	}
	if s.MaxBytes > 0 {
		parts = append(parts, "≤ "+FormatSize(s.MaxBytes)+" in all")
	} else {
		parts = append(parts, "no size limit")
	}
	if s.MaxAge > 0 {
		if s.MaxMsgs > 0 {
			parts = append(parts, "slots freed after "+s.MaxAge.String())
		} else {
			parts = append(parts, "kept "+s.MaxAge.String())
		}
	}
	if p := placementText(s.Placement); p != "any" {
		parts = append(parts, "placed on "+p)
	}
	if s.Mirror != "" {
		parts = append(parts, "mirror of "+s.Mirror)
	}
	if len(s.Sources) > 0 {
		parts = append(parts, "sources "+strings.Join(s.Sources, ", "))
	}
	return strings.Join(parts, ", ")
}

func placementText(p *jetstream.Placement) string {
	if p == nil || (p.Cluster == "" && len(p.Tags) == 0) {
		return "any"
	}
	var parts []string
	if p.Cluster != "" {
		parts = append(parts, "cluster "+p.Cluster)
	}
	if len(p.Tags) > 0 {
		tags := slices.Clone(p.Tags)
		slices.Sort(tags)
		parts = append(parts, "tags "+strings.Join(tags, ","))
	}
	return strings.Join(parts, " ")
}

func sizeOrNone(n int64) string {
	if n <= 0 {
		return "none"
	}
	return FormatSize(n)
}

func ageOrNone(d time.Duration) string {
	if d <= 0 {
		return "none"
	}
	return d.String()
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}
