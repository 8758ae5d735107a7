package main

// userfaultfd(2) on arm64: include/uapi/asm-generic/unistd.h (__NR_userfaultfd).
const sysUserfaultfd = 282
