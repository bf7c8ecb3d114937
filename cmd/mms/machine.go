package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/spf13/cobra"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/machine"
)

func (a *app) newMachineCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "machine",
		Short: "Validate and run autonomous machines (machine.yaml), fire their transitions on nodes",
	}
	cmd.AddCommand(a.newMachineValidateCmd(), a.newMachineRunCmd(), a.newMachineTransitionCmd())
	return cmd
}

func (a *app) newMachineValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate PATH",
		Short: "Check a machine.yaml (or a machine directory) the way the agent will",
		Long: `Validate parses a machine.yaml strictly (unknown keys are errors) and checks
it the way the agent does before it loads a machine: states, transitions,
watcher types, intervals and every watcher's properties. PATH is a machine
directory or a machine.yaml file. Every problem is printed with its line.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			def, err := readDefinition(args[0])
			if err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					fmt.Fprintln(a.stderr, line)
				}
				return &exitError{code: 1, err: fmt.Errorf("%s is not a valid machine", args[0])}
			}
			for _, w := range def.Warnings {
				fmt.Fprintf(a.stderr, "warning: %s\n", w)
			}
			fmt.Fprintf(a.stdout, "ok: %s %s (%d watcher%s)\n", def.Name, def.Version, len(def.Watchers), plural(len(def.Watchers)))
			return nil
		},
	}
}

// readDefinition reads, parses and validates PATH, a machine directory or
// a machine.yaml file.
func readDefinition(path string) (*machine.Definition, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return machine.Load(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, machine.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	def, err := machine.Parse(data)
	if err == nil {
		err = def.Validate()
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return def, nil
}

func (a *app) newMachineRunCmd() *cobra.Command {
	var (
		factsFile, identity, dataDir string
		jsonOut                      bool
	)
	cmd := &cobra.Command{
		Use:   "run DIR",
		Short: "Run one machine locally, printing its events, until interrupted",
		Long: `Run loads the machine in DIR (DIR/machine.yaml) and runs it on this computer
without NATS: every transition and watcher state event is printed as one line
(or as CloudEvent JSON with --json) until Ctrl-C. Machine data goes to a
temporary directory unless --data-dir is given; a --data-dir is locked while
the machine runs, so it refuses the data directory of a running agent (and
an agent refuses to start on it meanwhile).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runMachine(cmd.Context(), args[0], factsFile, identity, dataDir, jsonOut)
		},
	}
	host, _ := os.Hostname()
	cmd.Flags().StringVar(&factsFile, "facts", "", "JSON or YAML facts `FILE` (merged over the built-in facts)")
	cmd.Flags().StringVar(&identity, "identity", host, "node identity carried in events")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "keep machine data under `DIR`/<name> (default: a temporary directory)")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print each event as CloudEvent JSON")
	return cmd
}

func (a *app) runMachine(ctx context.Context, dir, factsFile, identity, dataDir string, jsonOut bool) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("run machine: %w", err)
	}
	def, err := machine.Load(abs)
	if err != nil {
		return fmt.Errorf("run machine: %w", err)
	}
	if factsFile != "" {
		if _, err := agent.LoadFacts(factsFile); err != nil {
			return fmt.Errorf("run machine: %w", err)
		}
	}
	if dataDir == "" {
		tmp, err := os.MkdirTemp("", "mms-machine-data-")
		if err != nil {
			return fmt.Errorf("run machine: %w", err)
		}
		defer os.RemoveAll(tmp)
		dataDir = tmp
	} else {
		// An agent's data directory is written by one process at a time.
		if dataDir, err = filepath.Abs(dataDir); err != nil {
			return fmt.Errorf("run machine: %w", err)
		}
		release, err := lockDirs("mms machine run", "", dataDir)
		if err != nil {
			return fmt.Errorf("run machine: %w", err)
		}
		defer release()
	}
	store, err := agent.OpenDataStore(filepath.Join(dataDir, def.Name), a.log)
	if err != nil {
		return fmt.Errorf("run machine: %w", err)
	}
	m, err := agent.NewMachine(def, agent.MachineConfig{
		Dir:       abs,
		Identity:  identity,
		Log:       a.log,
		Publisher: &linePublisher{w: a.stdout, json: jsonOut},
		Data:      store,
		Facts:     agent.NewFactsFile(factsFile, a.log).Facts,
	})
	if err != nil {
		return fmt.Errorf("run machine: %w", err)
	}
	return m.Run(ctx)
}

// linePublisher prints each event as one line.
type linePublisher struct {
	json bool

	mu sync.Mutex
	w  io.Writer
}

var _ agent.Publisher = (*linePublisher)(nil)

// Publish writes ev to the output.
func (p *linePublisher) Publish(_ context.Context, _ string, ev event.Event) error {
	line, err := formatEvent(ev, p.json)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err = fmt.Fprintln(p.w, line)
	return err
}

// formatEvent renders ev as its CloudEvent JSON or as the line `mms
// events` prints for it.
func formatEvent(ev event.Event, raw bool) (string, error) {
	if raw {
		b, err := json.Marshal(ev)
		if err != nil {
			return "", fmt.Errorf("encode event: %w", err)
		}
		return string(b), nil
	}
	e, err := fleet.ReadEvent(ev)
	if err != nil {
		return "", err
	}
	return e.Line(), nil
}
