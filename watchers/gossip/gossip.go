// Package gossipwatcher is the "gossip" watcher: while its machine is in a
// state the watcher runs in, it publishes a payload to a NATS subject every
// interval (default 15s), as Choria's gossip watcher does, for example to
// keep a service registration alive.
//
// # Properties
//
// Either subject and payload, which may be templates (rendered once, when
// the machine loads; see github.com/mms-io/mms/watchers/render; Choria
// renders them for every publish), or registration, Choria's service
// registration (cluster, service, protocol, ip, port, priority,
// annotations; address is read as ip, with a warning): Choria's JSON of it
// (the ip published as address) is published to
// $KV.CHORIA_SERVICES.<cluster>.<protocol>.<service>.<instance>, which puts
// it into the CHORIA_SERVICES key-value bucket when that exists (or under
// registration.prefix instead of $KV.CHORIA_SERVICES). The instance is the
// machine's instance id, which in mms is stable across restarts (Choria's
// changes with every load, so its registrations pile up until they expire).
//
// ttl_seconds asks JetStream to expire the message after that long: mms sets
// the Nats-TTL header NATS servers honour (the stream needs per-message TTLs
// allowed), and, for consumers that read it, Choria's Nats-TTLSeconds.
//
// # Events
//
// Choria publishes the gossip watcher's state only on announce_interval.
// mms publishes one state event when gossiping starts (the machine starts
// in, or enters, a state the watcher runs in), then only on announce, with
// the latest publish; it carries Choria's previous_subject, previous_payload and previous_gossip
// (unix time of the last publish). A publish that fails (no connection) is
// an error: the fail_transition fires; success fires no transition.
package gossipwatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/render"
)

// Defaults.
const (
	// DefaultInterval is how often the payload is published when the
	// watcher sets no interval (Choria's).
	DefaultInterval = 15 * time.Second
	// RegistrationPrefix is where registrations are published when
	// registration.prefix is unset: the subjects of the CHORIA_SERVICES
	// key-value bucket.
	RegistrationPrefix = "$KV.CHORIA_SERVICES"
	// MaxPayload caps the payload.
	MaxPayload = 64 << 10
)

func init() {
	watchers.Register(watchers.Info{
		Type:            "gossip",
		Version:         "v1",
		New:             func() watchers.Watcher { return new(Watcher) },
		DefaultInterval: watchers.Duration(DefaultInterval),
		MinInterval:     watchers.Duration(time.Second),
		Timeout:         watchers.Duration(30 * time.Second),
	})
}

// Registration is Choria's service registration, as machine.yaml gives it.
// What is published is [Published], Choria's registration JSON.
type Registration struct {
	// Cluster, Service and Protocol name the service; each must match
	// ^[a-zA-Z][a-zA-Z0-9_-]*$.
	Cluster  string `json:"cluster"`
	Service  string `json:"service"`
	Protocol string `json:"protocol"`
	// IP is the address the service listens on, under Choria's key; it
	// is published as address.
	IP string `json:"ip,omitempty"`
	// Address is mms's earlier name for IP, still read, with a warning
	// (Choria ignores it).
	Address string `json:"address,omitempty"`
	// Port is the service's port.
	Port uint `json:"port"`
	// Priority orders instances of the service.
	Priority uint `json:"priority"`
	// Annotations are extra data about the instance.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Prefix replaces $KV.CHORIA_SERVICES in the subject; not published.
	Prefix string `json:"prefix,omitempty"`
}

// Published is the registration as it is published: Choria's JSON, where
// the IP address is called address.
type Published struct {
	Cluster     string            `json:"cluster"`
	Service     string            `json:"service"`
	Protocol    string            `json:"protocol"`
	Address     string            `json:"address"`
	Port        uint              `json:"port"`
	Priority    uint              `json:"priority"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Watcher is the gossip watcher's configuration (its machine.yaml
// properties) and runtime state.
type Watcher struct {
	// Subject is the NATS subject to publish to; it may be a template.
	// Required unless registration is set.
	Subject string `json:"subject,omitempty"`
	// Payload is what to publish; it may be a template. Required unless
	// registration is set.
	Payload string `json:"payload,omitempty"`
	// TTLSeconds, when positive, asks JetStream to expire the message after
	// that many seconds.
	TTLSeconds int `json:"ttl_seconds,omitempty"`
	// Registration publishes a Choria service registration instead of
	// subject and payload.
	Registration *Registration `json:"registration,omitempty"`

	conn    *nats.Conn
	log     *slog.Logger
	subject string // rendered, set by Provision
	payload string

	announced bool // a state event went out since gossip started
}

// State is the type-specific part of the gossip watcher's state event:
// Choria's fields.
type State struct {
	Subject   string `json:"previous_subject"`
	Payload   string `json:"previous_payload"`
	Published int64  `json:"previous_gossip"`
}

var name = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_-]*$`)

// Normalize moves registration.address, mms's earlier name, to
// registration.ip, Choria's, when it is the only one given or both agree.
func (w *Watcher) Normalize() []string {
	r := w.Registration
	if r == nil || r.Address == "" || (r.IP != "" && r.IP != r.Address) {
		return nil // two different addresses: Validate says so
	}
	r.IP, r.Address = r.Address, ""
	return []string{fmt.Sprintf("registration.address: mms's earlier name for registration.ip, the key Choria reads (it ignores address): write ip: %s", r.IP)}
}

// Validate checks the properties.
func (w *Watcher) Validate() error {
	var errs []error
	add := func(field string, err error) { errs = append(errs, fmt.Errorf("%s: %w", field, err)) }
	if w.TTLSeconds < 0 {
		add("ttl_seconds", fmt.Errorf("%d is negative", w.TTLSeconds))
	}
	if r := w.Registration; r != nil {
		if w.Subject != "" {
			add("subject", errors.New("cannot be set with registration"))
		}
		if w.Payload != "" {
			add("payload", errors.New("cannot be set with registration"))
		}
		for _, f := range []struct{ field, value string }{
			{"registration.cluster", r.Cluster}, {"registration.service", r.Service}, {"registration.protocol", r.Protocol},
		} {
			switch {
			case f.value == "":
				add(f.field, errors.New("required"))
			case !name.MatchString(f.value):
				add(f.field, fmt.Errorf("%q must match %s", f.value, name))
			}
		}
		switch {
		case r.Address != "" && r.IP != "":
			add("registration.address", fmt.Errorf("%q disagrees with registration.ip %q: they are one setting; give ip, Choria's key", r.Address, r.IP))
		case r.IP == "":
			add("registration.ip", errors.New("required: the service's IP address (Choria's key; mms also reads it as address)"))
		case net.ParseIP(r.IP) == nil:
			add("registration.ip", fmt.Errorf("%q is not an IP address", r.IP))
		}
		if r.Port == 0 || r.Port > 65535 {
			add("registration.port", fmt.Errorf("%d is not a port number (1-65535)", r.Port))
		}
		if r.Prefix != "" {
			if err := checkSubject(r.Prefix); err != nil {
				add("registration.prefix", err)
			}
		}
		return errors.Join(errs...)
	}
	for _, f := range []struct{ field, value string }{{"subject", w.Subject}, {"payload", w.Payload}} {
		switch {
		case f.value == "":
			add(f.field, errors.New("required (or registration)"))
		case render.Has(f.value):
			if err := render.Check(f.value); err != nil {
				add(f.field, err)
			}
		case f.field == "subject":
			if err := checkSubject(f.value); err != nil {
				add(f.field, err)
			}
		}
	}
	if len(w.Payload) > MaxPayload {
		add("payload", fmt.Errorf("longer than %d bytes", MaxPayload))
	}
	return errors.Join(errs...)
}

// checkSubject accepts a subject one can publish to: dot-separated tokens,
// none empty, no white space and no wildcard.
func checkSubject(s string) error {
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n") {
			return fmt.Errorf("%q is not a subject to publish to: want dot-separated tokens without blanks or wildcards", s)
		}
	}
	return nil
}

// Provision renders the subject and payload, or builds the registration.
func (w *Watcher) Provision(d watchers.Deps) error {
	w.conn, w.log = d.Conn, d.Log
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if r := w.Registration; r != nil {
		prefix := r.Prefix
		if prefix == "" {
			prefix = RegistrationPrefix
		}
		w.subject = strings.Join([]string{prefix, r.Cluster, r.Protocol, r.Service, watchers.InstanceID(d.Identity, d.Machine)}, ".")
		b, err := json.Marshal(Published{
			Cluster: r.Cluster, Service: r.Service, Protocol: r.Protocol, Address: r.IP,
			Port: r.Port, Priority: r.Priority, Annotations: r.Annotations,
		})
		if err != nil {
			return fmt.Errorf("registration: %w", err)
		}
		w.payload = string(b)
		return nil
	}
	r := render.NewRenderer(d)
	var err error
	if w.subject, err = r.String(w.Subject); err != nil {
		return fmt.Errorf("subject: %w", err)
	}
	if err := checkSubject(w.subject); err != nil {
		return fmt.Errorf("subject: template %q: %w", w.Subject, err)
	}
	if w.payload, err = r.String(w.Payload); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	return nil
}

// StateChanged notes whether the watcher runs; gossip that starts again
// is reported again.
func (w *Watcher) StateChanged(active bool) {
	if !active {
		w.announced = false
	}
}

// Check publishes the payload once.
func (w *Watcher) Check(context.Context) (watchers.Result, error) {
	if w.conn == nil {
		return watchers.Result{}, errors.New("publish gossip: no NATS connection: the gossip watcher needs the node connected to NATS")
	}
	msg := nats.NewMsg(w.subject)
	msg.Data = []byte(w.payload)
	if w.TTLSeconds > 0 {
		ttl := strconv.Itoa(w.TTLSeconds) + "s"
		msg.Header.Set(nats.MsgTTLHdr, ttl)
		msg.Header.Set("Nats-TTLSeconds", ttl)
	}
	if err := w.conn.PublishMsg(msg); err != nil {
		return watchers.Result{}, fmt.Errorf("publish gossip to %s: %w", w.subject, err)
	}
	st := State{Subject: w.subject, Payload: w.payload, Published: time.Now().Unix()}
	// The first publish since gossip started is published; later ones
	// only update what announce_interval republishes.
	quiet := w.announced
	w.announced = true
	return watchers.Result{Outcome: watchers.Report, State: st, Quiet: quiet}, nil
}

var (
	_ watchers.Watcher       = (*Watcher)(nil)
	_ watchers.Normalizer    = (*Watcher)(nil)
	_ watchers.Validator     = (*Watcher)(nil)
	_ watchers.Provisioner   = (*Watcher)(nil)
	_ watchers.StateObserver = (*Watcher)(nil)
)
