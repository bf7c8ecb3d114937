// Package plugins compiles watcher types and machines into the mms binary.
// Its generated file holds one blank import per entry of user_plugins.yaml.
package plugins
