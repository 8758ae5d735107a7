// uffdc-go is the Go workload of uffd-conformance: a real Go runtime in the loop. The suite's
// probes run it as a child process; it maps memory, registers it with a userfaultfd of its own
// and hands the descriptor to the probe (SCM_RIGHTS), which serves it from another process, as
// the page servers of Go programs do. Its goroutines then fault on missing pages through the
// access paths a Go program uses (a plain load in Go code, bytes.Equal, copy, MADV_POPULATE_READ
// through the syscall package) while the runtime stops the world (runtime.GC).
//
// Standard library only, raw system calls for userfaultfd (the syscall package has none). Built
// statically by `cargo xtask` with a Go toolchain from Debian's archive.
//
// Usage: uffdc-go version | park PATH [sigurg] | dontneed | stress PATH WORKERS PAGES ROUNDS, with
// the probe's socket as fd 3.
// Lines go both ways on the socket; a failure is one line `error: <why>`, then exit status 1.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
)

// The probe's end of a socketpair, inherited as fd 3.
const sockFd = 3

var sendMu sync.Mutex

// send writes one line to the probe.
func send(words ...any) {
	line := []byte(strings.TrimSpace(fmt.Sprintln(words...)) + "\n")
	sendMu.Lock()
	defer sendMu.Unlock()
	for len(line) > 0 {
		n, err := syscall.Write(sockFd, line)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			// The probe is gone: nothing is left to report to.
			os.Exit(2)
		}
		line = line[n:]
	}
}

// fail reports why the workload cannot go on, and exits.
func fail(format string, args ...any) {
	send("error: " + fmt.Sprintf(format, args...))
	os.Exit(1)
}

// commands delivers the probe's lines; the workload exits when the probe closes its end.
func commands() <-chan string {
	lines := make(chan string, 16)
	go func() {
		in := bufio.NewReader(os.NewFile(sockFd, "probe"))
		for {
			line, err := in.ReadString('\n')
			if err != nil {
				os.Exit(0)
			}
			lines <- strings.TrimSpace(line)
		}
	}()
	return lines
}

// expect waits for the probe's next line, which must start with `word`; returns its other words.
func expect(lines <-chan string, word string) []string {
	line := <-lines
	fields := strings.Fields(line)
	if len(fields) == 0 || fields[0] != word {
		fail("expected %q from the probe, got %q", word, line)
	}
	return fields[1:]
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: uffdc-go version | park PATH [sigurg] | dontneed | stress PATH WORKERS PAGES ROUNDS (socket on fd 3)")
		os.Exit(2)
	}
	// A fixed number of Ps, whatever the machine: one for the goroutine parked on a page (it
	// keeps it), two for the rest (the one stopping the world, the GC's workers, the watcher).
	runtime.GOMAXPROCS(3)
	switch os.Args[1] {
	case "version":
		fmt.Println(runtime.Version())
	case "park":
		park(pathArg(), len(os.Args) > 3 && os.Args[3] == "sigurg")
	case "dontneed":
		dontneed()
	case "stress":
		stress(pathArg())
	default:
		fail("unknown mode %q", os.Args[1])
	}
}

func pathArg() accessPath {
	if len(os.Args) < 3 {
		fail("%s needs an access path: load, equal, copy or populate", os.Args[1])
	}
	p, ok := parsePath(os.Args[2])
	if !ok {
		fail("unknown access path %q: load, equal, copy or populate", os.Args[2])
	}
	return p
}
