package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"syscall"
	"time"
)

// sigurgs counts the SIGURGs the runtime passed on to the program (signal.Notify): the runtime's
// preemption signal, whose handler (runtime.doSigPreempt) runs first. Coalesced signals count
// once, so this is a lower bound.
func countSigurg() *atomic.Int64 {
	var n atomic.Int64
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGURG)
	go func() {
		for range ch {
			n.Add(1)
		}
	}()
	return &n
}

// park: one goroutine reads a missing page through `path`; on the probe's word another stops the
// world with runtime.GC(). With `sigurg`, the SIGURGs the runtime passes on are counted.
//
//	workload -> probe: the uffd (SCM_RIGHTS), then `ready <go version>`
//	probe -> workload: `gc` (the reader's fault is pending and its thread asleep)
//	workload -> probe: `stopped <µs>` once a stop-the-world (the GC's first) has stopped every P;
//	                   `gc-done <µs>` when runtime.GC() returned; `access-done <ok|mismatch|errno>`
//	                   when the read returned (either order);
//	                   `done sigurg=<n>` once both returned, then it exits
//
// The probe serves the page with 0xA5 bytes when it chooses (or never, and ends the workload).
func park(path accessPath, sigurg bool) {
	lines := commands()
	var sigurgs *atomic.Int64
	if sigurg {
		sigurgs = countSigurg()
	} else {
		sigurgs = new(atomic.Int64)
	}
	page := mapPages(1)
	want := make([]byte, pageSize)
	for i := range want {
		want[i] = 0xA5
	}
	scratch := make([]byte, pageSize)
	sendFd(newUffd(page, featureThreadID))
	send("ready", runtime.Version())
	read := make(chan struct{})
	go func() {
		ok, err := access(path, page, want, scratch)
		switch {
		case err != nil:
			send("access-done", errnoWord(err))
		case ok:
			send("access-done ok")
		default:
			send("access-done mismatch")
		}
		close(read)
	}()
	collect(lines)
	<-read
	send("done", fmt.Sprintf("sigurg=%d", sigurgs.Load()))
}

// stops is the runtime's count of stop-the-worlds that stopped every P: the samples of the
// /sched/pauses/stopping/gc:seconds and /sched/pauses/stopping/other:seconds histograms,
// recorded by stopTheWorldWithSema once its wait for the Ps ends (runtime/proc.go:1717 in
// go1.27.3).
func stops() uint64 {
	s := []metrics.Sample{
		{Name: "/sched/pauses/stopping/gc:seconds"},
		{Name: "/sched/pauses/stopping/other:seconds"},
	}
	metrics.Read(s)
	var n uint64
	for _, sample := range s {
		if sample.Value.Kind() != metrics.KindFloat64Histogram {
			fail("the runtime has no %s metric", sample.Name)
		}
		for _, c := range sample.Value.Float64Histogram().Counts {
			n += c
		}
	}
	return n
}

// collect runs runtime.GC() on the probe's `gc` line, reporting each stop-the-world that stopped
// every P while it runs (watchStops) and then `gc-done <us>`.
func collect(lines <-chan string) {
	expect(lines, "gc")
	start := time.Now()
	stopped := watchStops(start)
	runtime.GC()
	send("gc-done", time.Since(start).Microseconds())
	close(stopped)
}

// watchStops sends `stopped <µs since start>` once a stop-the-world has stopped every P; it can
// only tell once the world runs again (it is a goroutine). Closing the channel ends it, after a
// last look.
func watchStops(start time.Time) chan struct{} {
	before := stops()
	end := make(chan struct{})
	go func() {
		for done := false; ; {
			if stops() > before {
				send("stopped", time.Since(start).Microseconds())
				return
			}
			if done {
				return
			}
			select {
			case <-end:
				done = true
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	return end
}

// dontneed: a goroutine removes a page with MADV_DONTNEED (through syscall.Madvise, so in a
// system call as the runtime sees it), which blocks until the probe reads its REMOVE event; on the
// probe's word another stops the world with runtime.GC().
//
//	workload -> probe: the uffd (EVENT_REMOVE), then `ready <go version>`
//	probe -> workload: `dontneed`;  workload -> probe: `tid <n>` (the remover's thread)
//	probe -> workload: `gc` (the REMOVE is pending, its thread asleep)
//	workload -> probe: `stopped <µs>` once a stop-the-world stopped every P, `gc-done <µs>`;
//	                   `dontneed-done <0|errno=N>`; `done` once both returned
func dontneed() {
	lines := commands()
	page := mapPages(1)
	sendFd(newUffd(page, featureEventRemove))
	send("ready", runtime.Version())
	expect(lines, "dontneed")
	removed := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		send("tid", syscall.Gettid())
		if err := syscall.Madvise(page, syscall.MADV_DONTNEED); err != nil {
			send("dontneed-done", errnoWord(err))
		} else {
			send("dontneed-done 0")
		}
		close(removed)
	}()
	collect(lines)
	<-removed
	send("done")
}

// errnoWord names a system call's failure for the probe: `errno=22`.
func errnoWord(err error) string {
	if e, ok := err.(syscall.Errno); ok {
		return fmt.Sprintf("errno=%d", int(e))
	}
	return "errno=-1"
}
