package web

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/internal/backoff"
)

//go:embed assets
var assets embed.FS

// Config is what a Server needs: the NATS connection the fleet is read
// from and how the fleet is judged.
type Config struct {
	// Conn subscribes to the machine events; JS reads the buckets.
	Conn *nats.Conn
	JS   jetstream.JetStream
	// Fleet says where the buckets are and when a node is stale.
	Fleet fleet.Options
	// Timeout bounds NATS requests: the first read of the buckets and the
	// setup of an event replay (default 10s).
	Timeout time.Duration
	// OnReconnect, when set, registers a func to call after the
	// connection reconnects (natsbox.Status.OnReconnect): the watches are
	// made again then, since a KV watch can stay silent after a server
	// restart.
	OnReconnect func(f func()) (remove func())
	// MinInterval is the least time between two views pushed to the
	// pages (default 1s): a busy fleet changes many times a second.
	MinInterval time.Duration
	// Refresh is how often the view is computed again without a change
	// (default 2s), so ages, staleness and pauses move on.
	Refresh time.Duration
	// AllowRemote serves requests whatever host they name. Without it
	// only loopback hosts are served (see [Loopback]).
	AllowRemote bool
	// MaxStreams caps the live streams open at once (default 256).
	MaxStreams int
	// Log receives what goes wrong (default: discarded).
	Log *slog.Logger
}

// withDefaults fills in the zero fields.
func (c Config) withDefaults() Config {
	c.Timeout = cmp.Or(c.Timeout, 10*time.Second)
	c.MinInterval = cmp.Or(c.MinInterval, time.Second)
	c.Refresh = cmp.Or(c.Refresh, 2*time.Second)
	c.MaxStreams = cmp.Or(c.MaxStreams, 256)
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Server serves the fleet page. [Server.Run] keeps its view current;
// [Server.Handler] serves it.
type Server struct {
	cfg     Config
	streams chan struct{} // one token per open stream

	mu   sync.Mutex
	cur  *snapshot
	next chan struct{} // closed when cur is replaced
}

// snapshot is one view of the fleet, encoded once for every page.
type snapshot struct {
	seq  uint64
	view fleet.View
	// page is the fleetPage of view, as JSON.
	page []byte
	// err is why there is no view, when there is none.
	err error
}

// New returns a server for cfg. It serves nothing useful until Run has
// read the fleet once: until then a request waits for the first view.
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	return &Server{cfg: cfg, streams: make(chan struct{}, cfg.MaxStreams), next: make(chan struct{})}
}

// Run follows the live spec and the status bucket until ctx ends and
// publishes a view to the pages after every change (at most one per
// MinInterval) and every Refresh. When the buckets cannot be read (no
// status bucket yet, NATS away) the pages say why and Run tries again. It
// returns nil when ctx ends.
func (s *Server) Run(ctx context.Context) error {
	reconnected := make(chan struct{}, 1)
	if s.cfg.OnReconnect != nil {
		remove := s.cfg.OnReconnect(func() {
			select {
			case reconnected <- struct{}{}:
			default:
			}
		})
		defer remove()
	}
	retry := backoff.Policy{First: 500 * time.Millisecond, Max: 10 * time.Second}
	logged := "" // the last error logged: a retry that fails alike is not logged again
	for attempt := 1; ; attempt++ {
		w, err := s.follow(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if err.Error() != logged {
				logged = err.Error()
				s.cfg.Log.Warn("cannot read the fleet; trying again", "error", err)
			}
			s.publish(nil, err)
			if !backoff.Sleep(ctx, retry.Jittered(attempt)) {
				return nil
			}
			continue
		}
		attempt, logged = 0, ""
		err = s.track(ctx, w, reconnected)
		w.Stop()
		if ctx.Err() != nil {
			return nil
		}
		s.cfg.Log.Info("following the fleet again", "why", err)
	}
}

// follow starts the watches and reads the current values.
func (s *Server) follow(ctx context.Context) (*fleet.Watcher, error) {
	o := s.cfg.Fleet
	o.ReadTimeout = s.cfg.Timeout
	return fleet.Follow(ctx, s.cfg.JS, o)
}

// errReconnected ends track after NATS reconnected.
var errReconnected = errors.New("nats reconnected")

// track publishes w's view after each change and each Refresh until ctx
// ends, w's watch ends or NATS reconnects.
func (s *Server) track(ctx context.Context, w *fleet.Watcher, reconnected <-chan struct{}) error {
	for {
		s.publish(w.Tracker(), nil)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-reconnected:
			return errReconnected
		case <-time.After(s.cfg.MinInterval):
		}
		if _, err := w.Next(ctx, max(s.cfg.Refresh-s.cfg.MinInterval, time.Millisecond)); err != nil {
			return err
		}
	}
}

// publish makes t's view at this time (or err) the current snapshot and
// wakes the streams.
func (s *Server) publish(t *fleet.Tracker, err error) {
	snap := &snapshot{err: err}
	page := &fleetPage{At: time.Now(), Nodes: []pageNode{}, Rollouts: []pageRollout{}}
	if t != nil {
		snap.view = t.View(page.At)
		page = newFleetPage(snap.view)
	} else {
		snap.view = fleet.View{At: page.At}
		page.Error = err.Error()
	}
	b, jerr := json.Marshal(page)
	if jerr != nil {
		s.cfg.Log.Error("cannot encode the fleet view", "error", jerr)
		b, _ = json.Marshal(fleetPage{At: page.At, Error: "cannot encode the fleet view: " + jerr.Error(), Nodes: []pageNode{}, Rollouts: []pageRollout{}})
	}
	snap.page = b
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		snap.seq = s.cur.seq + 1
	}
	s.cur = snap
	close(s.next)
	s.next = make(chan struct{})
}

// current returns the current snapshot (nil before the first) and a
// channel closed when it is replaced.
func (s *Server) current() (*snapshot, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur, s.next
}

// wait returns the current snapshot, waiting for the first one until ctx
// ends (nil then).
func (s *Server) wait(ctx context.Context) *snapshot {
	for {
		snap, next := s.current()
		if snap != nil {
			return snap
		}
		select {
		case <-ctx.Done():
			return nil
		case <-next:
		}
	}
}

// Handler serves the page, its assets and its JSON and event streams:
//
//	/                      the fleet
//	/nodes/{identity}      a node
//	/rollouts              every rollout of the live spec
//	/rollouts/{machine}    one rollout
//	/events                the live events (?identity=&machine=&type=&since=)
//	/spec                  the live spec
//	/api/view              the fleet view, JSON
//	/api/nodes/{identity}  a node, JSON
//	/api/updates           the fleet view (?node= a node) after every change, server-sent events
//	/api/events            machine events, server-sent events (?identity=&machine=&type=&since=)
//
// Only GET and HEAD are served, every answer with a strict Content
// Security Policy and the other security headers.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded directory is there: a build without it does not compile
	}
	index, err := fs.ReadFile(static, "index.html")
	if err != nil {
		panic(err)
	}
	page := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(index)
	}
	// named serves the page of a node or a rollout: /nodes/ alone is none.
	named := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.PathValue(name) == "" {
				http.NotFound(w, r)
				return
			}
			page(w, r)
		}
	}
	for _, p := range []string{"GET /{$}", "GET /rollouts", "GET /events", "GET /spec"} {
		mux.HandleFunc(p, page)
	}
	mux.HandleFunc("GET /nodes/{identity...}", named("identity"))
	mux.HandleFunc("GET /rollouts/{machine...}", named("machine"))
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	mux.HandleFunc("GET /api/view", s.serveView)
	mux.HandleFunc("GET /api/nodes/{identity...}", s.serveNode)
	mux.HandleFunc("GET /api/updates", s.serveUpdates)
	mux.HandleFunc("GET /api/events", s.serveEvents)
	return secure(mux, s.cfg.AllowRemote)
}

// serveView answers the current fleet view.
func (s *Server) serveView(w http.ResponseWriter, r *http.Request) {
	snap := s.wait(r.Context())
	if snap == nil {
		return
	}
	writeJSON(w, snap.page)
}

// serveNode answers one node's page, 404 when no document has its name.
func (s *Server) serveNode(w http.ResponseWriter, r *http.Request) {
	snap := s.wait(r.Context())
	if snap == nil {
		return
	}
	p := s.nodePage(snap, r.PathValue("identity"))
	b, err := json.Marshal(p)
	if err != nil {
		http.Error(w, "encode the node's view: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if p.Node == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write(b)
		return
	}
	writeJSON(w, b)
}

// nodePage is the page of the node called name in snap.
func (s *Server) nodePage(snap *snapshot, name string) *nodePage {
	if snap.err != nil {
		return &nodePage{At: snap.view.At, Error: snap.err.Error(), Keys: []nodeKey{}, Rollouts: []nodeRollout{}}
	}
	return newNodePage(snap.view, name)
}

// writeJSON writes b as a JSON answer.
func writeJSON(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
