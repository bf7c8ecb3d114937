// Package fdlimit raises the process's limit on open files, for the
// programs that hold many: the agent (its embedded server, machines and
// metrics) and the benchmarks.
package fdlimit
