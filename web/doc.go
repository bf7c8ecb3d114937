// Package web is the fleet web page that `mms web` serves: the fleet, a
// node, the rollouts, the live events and the live spec, in a browser,
// from the operator's own mms binary and NATS; no other server.
//
// The page shows the values package fleet computes — the same nodes,
// flags, messages, rollouts and event lines as `mms status`, `mms rollout
// status` and `mms events` — and decides nothing itself: [Server.Run]
// follows the spec key and the status bucket with a fleet.Watcher, and
// every change is pushed to the open pages as one JSON view over
// server-sent events (/api/updates); /api/view is the same view at once.
// The events view is fleet.SubscribeEvents, filtered by
// fleet.EventFilter (/api/events, live or replayed with ?since=).
//
// The page is plain HTML, CSS and JavaScript embedded in the binary (no
// CDN, no external fonts, no build step), under a strict Content Security
// Policy: scripts and styles from the page's own origin only, no inline
// code, and Trusted Types, so the page can only write node text as text.
// It is read-only. A server bound to loopback answers only requests that
// name a loopback host, so a web page elsewhere cannot reach it through a
// rebound DNS name; see [Loopback] for what needs an explicit opt-in.
package web
