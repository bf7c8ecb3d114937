// Package plugins compiles watcher types and machines into the mms binary.
//
// The list lives in user_plugins.yaml at the root of the repository, a map
// of plugin name to Go import path. `go generate ./plugins` turns it into
// zz_plugins.go: one blank import per plugin, so that each plugin's init
// registers its watcher types
// ([github.com/mms-io/mms/watchers.Register]) or machines
// ([github.com/mms-io/mms/agent.RegisterMachine]), and the list [List]
// returns. Nothing is compiled in without being listed, built-in watchers
// included.
//
// A binary includes the plugins by importing this package:
//
//	import _ "github.com/mms-io/mms/plugins"
//
// The package holds no logic; the generator is plugins/internal/gen. The
// same `go generate` also rewrites docs/watchers.md, the reference of every
// compiled-in watcher type's properties (plugins/internal/watcherdoc).
package plugins

//go:generate go run ./internal/gen/cmd/gen
//go:generate go run ./internal/watcherdoc/cmd/watcherdoc

import "slices"

// Plugin is one entry of user_plugins.yaml.
type Plugin struct {
	// Name is the entry's key, a label naming the plugin.
	Name string `json:"name"`
	// ImportPath is the Go package compiled in.
	ImportPath string `json:"import_path"`
}

// List returns the plugins compiled into this binary from
// user_plugins.yaml, sorted by name.
func List() []Plugin {
	return slices.Clone(compiledIn)
}
