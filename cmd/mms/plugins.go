package main

import (
	"fmt"
	"io"
	"reflect"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/plugins"
	"github.com/mms-io/mms/watchers"
)

// pluginsView is the stable --json shape of `mms plugins`. Lists are
// never null.
type pluginsView struct {
	// Plugins are the entries of user_plugins.yaml compiled in, by name.
	Plugins []plugins.Plugin `json:"plugins"`
	// Watchers are the registered watcher types, by type.
	Watchers []watcherView `json:"watchers"`
	// Machines are the compiled-in machines, by name.
	Machines []machineView `json:"machines"`
	// PublicKeys are the spec-signing keys compiled in with -ldflags
	// (manager.PublicKey), in order; the manager trusts them when the node
	// configures no key.
	PublicKeys []keyView `json:"public_keys"`
}

// keyView describes one compiled-in public key.
type keyView struct {
	Key   string `json:"key"`
	KeyID string `json:"key_id"`
}

// watcherView describes one registered watcher type.
type watcherView struct {
	Type      string `json:"type"`
	Version   string `json:"version"`
	EventType string `json:"event_type"`
	// Package is the Go package that implements the type.
	Package string `json:"package"`
	// Plugin names the user_plugins.yaml entry that compiled the type in:
	// the entry whose import path is Package. It is empty for a type
	// registered by a package imported otherwise.
	Plugin string `json:"plugin"`
}

// machineView describes one compiled-in machine.
type machineView struct {
	Name string `json:"name"`
}

func (a *app) newPluginsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "plugins",
		Short: "List the watcher types and machines compiled into this binary",
		Long: `List what this mms binary was built with: the entries of
user_plugins.yaml, every registered watcher type with its event version and
CloudEvent type, the compiled-in machines, and the spec-signing public keys
compiled in with -ldflags "-X github.com/mms-io/mms/manager.PublicKey=<hex>"
(trusted when the agent is given no --public-key).

A watcher type's PLUGIN column names the user_plugins.yaml entry whose
package implements it ('-' for a type compiled in another way). To build a
binary with other plugins, edit user_plugins.yaml, run 'go generate ./plugins'
and rebuild (docs/build-your-own.md).`,
		Example: `  mms plugins
  mms plugins --json | jq -r '.watchers[].type'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := manager.CompiledKeys()
			if err != nil {
				return err
			}
			v := newPluginsView(plugins.List(), watchers.Types(), agent.RegisteredMachines())
			for _, k := range keys {
				v.PublicKeys = append(v.PublicKeys, keyView{Key: packer.FormatPublicKey(k), KeyID: packer.KeyID(k)})
			}
			if asJSON {
				return printJSON(a.stdout, v)
			}
			return printPlugins(a.stdout, v)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON document instead of tables")
	return cmd
}

// newPluginsView joins the plugin list with the registries: a watcher type
// belongs to the plugin whose import path is the package of the value its
// Info.New returns.
func newPluginsView(list []plugins.Plugin, types []watchers.Info, machines []string) pluginsView {
	v := pluginsView{
		Plugins:    append([]plugins.Plugin{}, list...),
		Watchers:   []watcherView{},
		Machines:   []machineView{},
		PublicKeys: []keyView{},
	}
	byPath := map[string]string{}
	for _, p := range list {
		byPath[p.ImportPath] = p.Name
	}
	for _, info := range types {
		pkg := packageOf(info.New())
		v.Watchers = append(v.Watchers, watcherView{
			Type:      info.Type,
			Version:   info.Version,
			EventType: info.EventType(),
			Package:   pkg,
			Plugin:    byPath[pkg],
		})
	}
	for _, name := range machines {
		v.Machines = append(v.Machines, machineView{Name: name})
	}
	return v
}

// packageOf returns the import path of the package that defines w's type,
// or "" for an unnamed type.
func packageOf(w watchers.Watcher) string {
	t := reflect.TypeOf(w)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return ""
	}
	return t.PkgPath()
}

func printPlugins(out io.Writer, v pluginsView) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "Plugins (user_plugins.yaml):")
	if len(v.Plugins) == 0 {
		fmt.Fprintln(tw, "  (none)")
	}
	for _, p := range v.Plugins {
		fmt.Fprintf(tw, "  %s\t%s\n", p.Name, p.ImportPath)
	}
	fmt.Fprintln(tw, "\nWatcher types:")
	if len(v.Watchers) == 0 {
		fmt.Fprintln(tw, "  (none)")
	} else {
		fmt.Fprintln(tw, "  TYPE\tVERSION\tEVENT TYPE\tPLUGIN")
	}
	for _, w := range v.Watchers {
		plugin := w.Plugin
		if plugin == "" {
			plugin = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", w.Type, w.Version, w.EventType, plugin)
	}
	fmt.Fprintln(tw, "\nCompiled-in machines:")
	if len(v.Machines) == 0 {
		fmt.Fprintln(tw, "  (none)")
	}
	for _, m := range v.Machines {
		fmt.Fprintf(tw, "  %s\n", m.Name)
	}
	fmt.Fprintln(tw, "\nCompiled-in public keys:")
	if len(v.PublicKeys) == 0 {
		fmt.Fprintln(tw, "  (none)")
	}
	for _, k := range v.PublicKeys {
		fmt.Fprintf(tw, "  %s\t(key id %s)\n", k.Key, k.KeyID)
	}
	return tw.Flush()
}
