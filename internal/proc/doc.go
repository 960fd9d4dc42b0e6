// Package proc starts the server programs that tests run against as child
// processes, each with its output in a log file, and stops them again.
//
// The platform-specific parts sit behind build tags: on Linux a child runs
// in its own process group and is killed when the test binary dies
// (Pdeathsig); on other Unix systems it runs in its own process group; on
// Windows it is a plain child process, stopped with Kill.
package proc
