package main

// userfaultfd through raw system calls: the syscall package has neither the system call nor its
// ioctls. The system call's number is the architecture's (sysnum_amd64.go, sysnum_arm64.go); the
// ioctls are the same on every architecture (include/uapi/linux/userfaultfd.h).

import (
	"bytes"
	"syscall"
	"unsafe"
)

const (
	uffdAPI       = 0xAA
	ioctlAPI      = 0xC018AA3F // _IOWR(0xAA, 0x3F, struct uffdio_api)
	ioctlRegister = 0xC020AA00 // _IOWR(0xAA, 0x00, struct uffdio_register)
	modeMissing   = 1

	featureEventRemove = 1 << 3
	featureThreadID    = 1 << 8

	madvPopulateRead = 22 // since Linux 5.14; not in the syscall package
)

var pageSize = syscall.Getpagesize()

// newUffd opens a userfaultfd with `features` (the handshake done) and registers `mem` on it for
// missing-page faults.
func newUffd(mem []byte, features uint64) int {
	fd, _, e := syscall.Syscall(sysUserfaultfd, syscall.O_CLOEXEC, 0, 0)
	if e != 0 {
		fail("userfaultfd: %v", e)
	}
	api := [3]uint64{uffdAPI, features, 0}
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, ioctlAPI, uintptr(unsafe.Pointer(&api[0]))); e != 0 {
		fail("UFFDIO_API: %v", e)
	}
	reg := [4]uint64{uint64(uintptr(unsafe.Pointer(&mem[0]))), uint64(len(mem)), modeMissing, 0}
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, ioctlRegister, uintptr(unsafe.Pointer(&reg[0]))); e != 0 {
		fail("UFFDIO_REGISTER: %v", e)
	}
	return int(fd)
}

// sendFd hands a descriptor to the probe (SCM_RIGHTS, one byte of payload).
func sendFd(fd int) {
	sendMu.Lock()
	defer sendMu.Unlock()
	if err := syscall.Sendmsg(sockFd, []byte{'F'}, syscall.UnixRights(fd), nil, 0); err != nil {
		fail("sendmsg(SCM_RIGHTS): %v", err)
	}
}

// mapPages maps `n` pages of anonymous private memory.
func mapPages(n int) []byte {
	mem, err := syscall.Mmap(-1, 0, n*pageSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		fail("mmap: %v", err)
	}
	return mem
}

// The ways a Go program reads memory, each a different place for the fault to happen.
type accessPath int

const (
	// A load in ordinary Go code: the runtime can preempt it asynchronously.
	pathLoad accessPath = iota
	// bytes.Equal: runtime.memequal, assembly.
	pathEqual
	// copy: runtime.memmove, assembly.
	pathCopy
	// MADV_POPULATE_READ through syscall.Madvise (entersyscall), then bytes.Equal on the
	// resident page: the seed's fix.
	pathPopulate
)

func parsePath(s string) (accessPath, bool) {
	switch s {
	case "load":
		return pathLoad, true
	case "equal":
		return pathEqual, true
	case "copy":
		return pathCopy, true
	case "populate":
		return pathPopulate, true
	}
	return 0, false
}

// loadWords reads the first, middle and last u64 words of a page with plain loads in Go code.
//
//go:noinline
func loadWords(page []byte) (first, mid, last uint64) {
	words := unsafe.Slice((*uint64)(unsafe.Pointer(&page[0])), len(page)/8)
	return words[0], words[len(words)/2], words[len(words)-1]
}

// access reads `page` (or the block of pages it starts) through `path` and reports whether it
// holds `want`. `scratch` is a page-sized buffer for pathCopy.
func access(path accessPath, page, want, scratch []byte) (bool, error) {
	switch path {
	case pathLoad:
		first, mid, last := loadWords(page)
		w := unsafe.Slice((*uint64)(unsafe.Pointer(&want[0])), len(want)/8)
		return first == w[0] && mid == w[len(w)/2] && last == w[len(w)-1], nil
	case pathEqual:
		return bytes.Equal(page, want), nil
	case pathCopy:
		copy(scratch, page)
		return bytes.Equal(scratch, want), nil
	default:
		if err := syscall.Madvise(page, madvPopulateRead); err != nil {
			return false, err
		}
		return bytes.Equal(page, want), nil
	}
}
