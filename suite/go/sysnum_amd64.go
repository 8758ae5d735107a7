package main

// userfaultfd(2) on x86_64: arch/x86/entry/syscalls/syscall_64.tbl.
const sysUserfaultfd = 323
