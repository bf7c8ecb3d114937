// Package agent is the autonomous-machine runtime of mms: the machine.yaml
// model and its strict validation, the finite-state machine, the one Runner
// that drives every watcher, the machine data store, the CloudEvents notifier
// and the Host that runs every machine under a directory.
package agent
