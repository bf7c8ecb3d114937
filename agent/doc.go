// Package agent is the autonomous-machine runtime of mms: the
// finite-state machine, the one Runner that drives every watcher, the
// machine data store, the CloudEvents notifier and the Host that runs every
// machine under a directory. It knows nothing of signing or installing: the
// manager drives it through the [watchers.Host] interface.
//
// # Machines
//
// A machine is a machine.yaml (a [machine.Definition]: the model, its
// parsing and validation live in package machine) plus the watchers it
// names. [NewMachine] validates and builds the watchers in one pass and
// provisions them; [Machine.Run] runs them.
//
// # Runner
//
// Each watcher gets one goroutine owned by its machine. It checks at start
// (when the machine's state is one the watcher runs in), on its interval,
// immediately after every transition of the machine, when its Streamer
// triggers, and at [watchers.Result.After]. Each check runs under the type's
// timeout with panics recovered. Errors back off exponentially (1 s doubling
// to 5 min, never sooner than the interval). Success and Failure fire the
// watcher's transitions; Report, Success, Failure and errors publish a state
// event (Unchanged publishes nothing). Transitions fired by checks that a
// transition poked are paced (25 ms doubling to 5 s while they come back to
// back) so watchers that bounce a machine between states cannot spin; the
// wait never holds a lock. Checks caused by intervals, streams or outside
// triggers fire at once.
//
// # Events
//
// Events are Choria's CloudEvents (see the constants in events.go), with
// mms's additions: a sub-second "time", the "outcome", "error" and
// "transition_error" of watcher states, and "announce" on periodic
// republishes. data.id is [watchers.InstanceID]: stable for a machine name on a node,
// across reloads and restarts. As in Choria, a check's state event is
// published before the transition it fires (both under the machine's
// transition lock, so nothing comes between them); its "transition_error"
// says in advance when the transition cannot fire.
//
// # Host
//
// [Host] runs MachinesDir/<name>/machine.yaml for every directory whose name
// passes [spec.CheckName] and equals the machine's name (so names are unique on
// a node), skipping dot directories, tmp and *-temp. It follows changes with
// file-system notifications and a periodic rescan; a version is the sha256 of
// machine.yaml plus the directory's inode. A new version is validated and
// built before the running one stops; a definition handed to
// [Host.LoadMachine] by an installer that already checked it is used
// instead of parsing the file again when it was parsed from the same
// bytes. Machine data lives in DataDir/<name>/machine_data.json, outside the code directory, so upgrades
// keep it. Compiled-in machines ([RegisterMachine], HostConfig.Machines) run
// in DataDir/<name> and are never removed by scans.
package agent
