// Package packer seals and opens mms specs and archives: ed25519 keys in the
// hex format of Choria's `mms keys`, the v1 (Choria) and v2 (DSSE) spec
// envelopes with their replay rules and the bounds of a signing policy
// ([OpenOptions.Validate], the one place they are checked), and the archive
// format (a deterministic tar.gz with a SHA256SUMS file) both ways. The
// payloads inside the envelopes are encoded and decoded by package spec,
// from its one wire description.
//
// packer knows nothing about NATS or the agent; it returns errors and never
// logs.
package packer
