package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// stress: the gated-server stress. Worker goroutines each own a block of pages and, round after
// round, read every page through `path` and check it holds the version the schedule says; after
// each round the coordinator removes seeded ranges of that worker's pages with MADV_DONTNEED and
// runs seeded stop-the-world cycles (runtime.ReadMemStats). The probe serves every fault with
// the page's current version under the EAGAIN protocol, holds every so often a fault until the
// program has run runtime.GC() (the barrier of Go's test servers), and races some copies against
// a REMOVE of a spare page that it asks the racer to make.
//
//	args: stress PATH WORKERS PAGES ROUNDS
//	workload -> probe: the uffd (EVENT_REMOVE, THREAD_ID), `ready <go version>`, `region <address>`
//	                   (WORKERS*PAGES pages, then the spare page), `racer <tid>`
//	probe -> workload: `plan <round> <worker> <cycles> [<a>-<b>...]` for every round and worker,
//	                   then `go`
//	probe -> workload: `hold`: run runtime.GC();  workload -> probe: `stopped <µs>` once a
//	                   stop-the-world has stopped every P, `released <µs>` when it returned
//	probe -> workload: `race`: remove the spare page;  workload -> probe: `raced <0|errno=N>`
//	workload -> probe: `result checked=N lost=N stale=N wrong=N cycles=N removals=N holds=N
//	                   populate=<0|errno=N>`, then it exits
func stress(path accessPath) {
	if len(os.Args) < 6 {
		fail("stress needs PATH WORKERS PAGES ROUNDS")
	}
	workers, pages, rounds := atoiArg(3), atoiArg(4), atoiArg(5)
	// A P for each worker, which a worker parked in a fault keeps, and two for the rest.
	runtime.GOMAXPROCS(workers + 2)
	lines := commands()
	mem := mapPages(workers*pages + 1)
	spare := mem[workers*pages*pageSize:]
	sendFd(newUffd(mem, featureEventRemove|featureThreadID))
	send("ready", runtime.Version())
	send("region", fmt.Sprintf("%#x", uintptr(unsafe.Pointer(&mem[0]))))

	// The racer: removes the spare page when asked, on a thread of its own (whose tid the probe
	// watches to see its MADV_DONTNEED wait for the REMOVE to be read).
	race := make(chan struct{})
	racerTid := make(chan int)
	go func() {
		runtime.LockOSThread()
		racerTid <- syscall.Gettid()
		for range race {
			send("raced", errnoOr0(syscall.Madvise(spare, syscall.MADV_DONTNEED)))
		}
	}()
	send("racer", <-racerTid)

	// The plan: removals[round][worker] and cycles[round][worker].
	removals := make([][][][2]int, rounds)
	cycles := make([][]int, rounds)
	for r := range rounds {
		removals[r] = make([][][2]int, workers)
		cycles[r] = make([]int, workers)
	}
	for {
		words := strings.Fields(<-lines)
		if len(words) == 1 && words[0] == "go" {
			break
		}
		if len(words) < 4 || words[0] != "plan" {
			fail("expected plan or go from the probe, got %q", strings.Join(words, " "))
		}
		r, w, c := atoi(words[1]), atoi(words[2]), atoi(words[3])
		cycles[r][w] = c
		for _, ab := range words[4:] {
			a, b, _ := strings.Cut(ab, "-")
			removals[r][w] = append(removals[r][w], [2]int{atoi(a), atoi(b)})
		}
	}

	// The probe's holds and races, while the work runs.
	var holds atomic.Int64
	go func() {
		for line := range lines {
			switch line {
			case "hold":
				holds.Add(1)
				go func() {
					start := time.Now()
					stopped := watchStops(start)
					runtime.GC()
					send("released", time.Since(start).Microseconds())
					close(stopped)
				}()
			case "race":
				race <- struct{}{}
			default:
				fail("unexpected line from the probe: %q", line)
			}
		}
	}()

	// What each page must hold: version v is the u64 v in every word; expected[p] starts at 1
	// and grows with each removal of p (the probe serves the next version after a REMOVE).
	wants := make([][]byte, rounds+2)
	for v := range wants {
		wants[v] = make([]byte, pageSize)
		words := unsafe.Slice((*uint64)(unsafe.Pointer(&wants[v][0])), pageSize/8)
		for i := range words {
			words[i] = uint64(v)
		}
	}
	expected := make([]int, workers*pages)
	for p := range expected {
		expected[p] = 1
	}
	// Per page, the worst a check found: 0 good, 1 lost, 2 stale, 3 wrong.
	worst := make([]int, workers*pages)
	var checked atomic.Int64
	populateErr := make(chan error, workers*rounds)
	start := make([]chan struct{}, workers)
	done := make([]chan struct{}, workers)
	for w := range workers {
		start[w], done[w] = make(chan struct{}, 1), make(chan struct{})
		start[w] <- struct{}{}
		go func(w int) {
			block := mem[w*pages*pageSize : (w+1)*pages*pageSize]
			scratch := make([]byte, pageSize)
			for range rounds {
				<-start[w]
				if path == pathPopulate {
					if err := syscall.Madvise(block, madvPopulateRead); err != nil {
						populateErr <- err
					}
				}
				for i := range pages {
					p := w*pages + i
					page := block[i*pageSize : (i+1)*pageSize]
					want := wants[expected[p]]
					ok, err := access(checkPath(path), page, want, scratch)
					if err != nil {
						populateErr <- err
					}
					if !ok {
						worst[p] = max(worst[p], classify(page, scratch, path, expected[p]))
					}
					checked.Add(1)
				}
				done[w] <- struct{}{}
			}
		}(w)
	}
	var nCycles, nRemovals int
	for r := range rounds {
		for w := range workers {
			<-done[w]
			for _, ab := range removals[r][w] {
				p0 := w * pages
				if err := syscall.Madvise(mem[(p0+ab[0])*pageSize:(p0+ab[1])*pageSize], syscall.MADV_DONTNEED); err != nil {
					fail("MADV_DONTNEED: %v", err)
				}
				for p := p0 + ab[0]; p < p0+ab[1]; p++ {
					expected[p]++
				}
				nRemovals++
			}
			if r+1 < rounds {
				start[w] <- struct{}{}
			}
			var stats runtime.MemStats
			for range cycles[r][w] {
				runtime.ReadMemStats(&stats) // a stop-the-world
				nCycles++
			}
		}
	}
	var lost, stale, wrong int
	for _, f := range worst {
		switch f {
		case 1:
			lost++
		case 2:
			stale++
		case 3:
			wrong++
		}
	}
	populate := "0"
	select {
	case err := <-populateErr:
		populate = errnoWord(err)
	default:
	}
	send(fmt.Sprintf("result checked=%d lost=%d stale=%d wrong=%d cycles=%d removals=%d holds=%d populate=%s",
		checked.Load(), lost, stale, wrong, nCycles, nRemovals, holds.Load(), populate))
}

// checkPath is how a page is read: the populate path pre-faulted the whole block already, and
// compares each page with bytes.Equal.
func checkPath(path accessPath) accessPath {
	if path == pathPopulate {
		return pathEqual
	}
	return path
}

// classify says what a page that failed its check holds: 1 lost (all zero), 2 stale (an older
// version), 3 wrong (a newer version, or a torn page). The page is resident by now.
func classify(page, scratch []byte, path accessPath, want int) int {
	src := page
	if path == pathCopy {
		src = scratch
	}
	first, mid, last := loadWords(src)
	switch {
	case first == 0 && mid == 0 && last == 0:
		return 1
	case first != mid || first != last:
		return 3
	case first < uint64(want):
		return 2
	default:
		return 3
	}
}

func errnoOr0(err error) string {
	if err == nil {
		return "0"
	}
	return errnoWord(err)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		fail("not a number: %q", s)
	}
	return n
}

func atoiArg(i int) int {
	return atoi(os.Args[i])
}
