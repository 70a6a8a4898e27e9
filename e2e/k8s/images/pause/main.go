// Command pause is the sandbox (infra) container of the e2e node's pods: it holds the pod's
// network, IPC and PID namespaces open while the app containers come and go. It does nothing
// else: it sleeps, reaps the zombies it inherits when it is the pod's PID 1 (shared process
// namespace), and exits 0 on SIGINT or SIGTERM so that stopping a sandbox is quick.
// Built here (CGO off: a static binary for a FROM scratch image) because no registry is
// reachable from the CI machines to pull the upstream pause image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		// Reap every exited child; WNOHANG so that a signal for a child still running returns.
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
