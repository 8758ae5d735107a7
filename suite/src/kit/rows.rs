//! Expectation rows that many behaviours share, chiefly those for kernels that lack a
//! prerequisite, and the wording of each missing prerequisite: `require.rs` words its `unsupported`
//! reasons with the same text, so a cell's reason reads like the rule it was graded against.

/// Declares a prerequisite's wording once: `$why` (what a cell says) and the expectation row
/// `$row` for the kernels that lack it (`(range, "unsupported: $why")`).
/// A prerequisite no behaviour needs outright (its probes report `not offered` instead) declares
/// only `$why`.
macro_rules! prerequisite {
($(#[$doc:meta])* $why:ident, $row:ident, $range:literal, $text:literal) => {
    $(#[$doc])*
    pub const $why: &str = $text;
    $(#[$doc])*
    pub const $row: (&str, &str) = ($range, concat!("unsupported: ", $text));
};
($(#[$doc:meta])* $why:ident, $row:ident, $range:literal, $row2:ident, $range2:literal, $text:literal) => {
    prerequisite!($(#[$doc])* $why, $row, $range, $text);
    $(#[$doc])*
    pub const $row2: (&str, &str) = ($range2, concat!("unsupported: ", $text));
};
($(#[$doc:meta])* $why:ident, $text:literal) => {
    $(#[$doc])*
    pub const $why: &str = $text;
};
}

// Expectation rows for kernels that lack a prerequisite, worded as the `require` helpers word it.
prerequisite!(
    /// userfaultfd(2) itself.
    BUILT_WITHOUT, NO_USERFAULTFD, "* when CONFIG_USERFAULTFD!=y", "the kernel is built without CONFIG_USERFAULTFD"
);
prerequisite!(
    /// Huge pages of hugetlbfs (MAP_HUGETLB, MFD_HUGETLB): without CONFIG_HUGETLBFS (which selects
    /// CONFIG_HUGETLB_PAGE, fs/Kconfig) the kernel has no huge page pool (no `Hugepagesize:` in
    /// /proc/meminfo, fs/proc/meminfo.c calls hugetlb_report_meminfo only with it) and mmap with
    /// MAP_HUGETLB fails (mm/mmap.c ksys_mmap_pgoff: hugetlb_file_setup returns ENOSYS, v6.12).
    /// Every behaviour that declares `huge_pages` has this row (`Behaviour::rules`).
    HUGETLBFS, NO_HUGETLBFS, "* when CONFIG_HUGETLBFS!=y", "the kernel is built without CONFIG_HUGETLBFS (no huge pages to map)"
);
prerequisite!(
    /// The non-cooperative events (REMOVE, UNMAP, REMAP, FORK).
    EVENTS, BEFORE_4_11, "<4.11", "the non-cooperative events are new in Linux 4.11"
);
prerequisite!(
    /// `vm.unprivileged_userfaultfd`.
    UNPRIVILEGED_SYSCTL, BEFORE_5_2, "<5.2", "vm.unprivileged_userfaultfd is new in Linux 5.2"
);
prerequisite!(
    /// `UFFD_USER_MODE_ONLY`.
    USER_MODE_ONLY, BEFORE_5_11, "<5.11", "UFFD_USER_MODE_ONLY is new in Linux 5.11"
);
prerequisite!(
    /// `MADV_POPULATE_READ` and `MADV_POPULATE_WRITE`.
    POPULATE, BEFORE_5_14, "<5.14", "MADV_POPULATE_* is new in Linux 5.14"
);
prerequisite!(
    /// Write-protect mode for anonymous memory (`UFFDIO_REGISTER_MODE_WP`, UFFDIO_WRITEPROTECT).
    WRITE_PROTECT, BEFORE_5_7, "<5.7", "write-protect mode (UFFD_FEATURE_PAGEFAULT_FLAG_WP) is new in Linux 5.7"
);
prerequisite!(
    /// Write-protect on arm64: `arch/arm64/Kconfig` selects `HAVE_ARCH_USERFAULTFD_WP` (with
    /// `USERFAULTFD`) only from Linux 6.10 ("arm64/mm: Add uffd write-protect support"), and
    /// without it `fs/userfaultfd.c userfaultfd_api` masks UFFD_FEATURE_PAGEFAULT_FLAG_WP (v6.1:
    /// `#ifndef CONFIG_HAVE_ARCH_USERFAULTFD_WP`), so an arm64 kernel before 6.10 has no
    /// write-protect at all (and no PTE markers: `PTE_MARKER_UFFD_WP` depends on it, mm/Kconfig).
    /// Debian's arm64 configs agree: 6.1.192 lacks the symbol, 6.12.118 has it. Older kernels did
    /// not check: v5.10's fs/userfaultfd.c (Debian's linux-source-5.10 5.10.262) advertises
    /// UFFD_API_FEATURES whole and userfaultfd_register accepts MODE_WP with no
    /// HAVE_ARCH_USERFAULTFD_WP check (mainline 00b151f21f39 "mm/userfaultfd: fail uffd-wp
    /// registration if not supported" added it; 5.10.y never took it), while arm64's
    /// pte_mkuffd_wp is asm-generic/pgtable_uffd.h's no-op: Debian's arm64 5.10 offers
    /// write-protect that protects nothing, which this row turns into `unexpected` cells (findings).
    ARCH_WRITE_PROTECT, ARM64_BEFORE_6_10, "<6.10 when arch=arm64",
    "arm64 has no userfaultfd write-protect before Linux 6.10 (arch/arm64/Kconfig selects HAVE_ARCH_USERFAULTFD_WP from 6.10)"
);
prerequisite!(
    /// `UFFD_FEATURE_MINOR_HUGETLBFS`.
    MINOR_HUGETLBFS, BEFORE_5_13, "<5.13", "UFFD_FEATURE_MINOR_HUGETLBFS is new in Linux 5.13"
);
prerequisite!(
    /// `UFFD_FEATURE_MINOR_SHMEM`.
    MINOR_SHMEM, BEFORE_5_14_MINOR, "<5.14", "UFFD_FEATURE_MINOR_SHMEM is new in Linux 5.14"
);
prerequisite!(
    /// MADV_DONTNEED on hugetlb mappings.
    HUGETLB_DONTNEED, BEFORE_5_18, "<5.18", "MADV_DONTNEED on hugetlb mappings is new in Linux 5.18"
);
prerequisite!(
    /// `UFFD_FEATURE_EXACT_ADDRESS`.
    EXACT_ADDRESS, "UFFD_FEATURE_EXACT_ADDRESS is new in Linux 5.18"
);
prerequisite!(
    /// `UFFD_FEATURE_WP_HUGETLBFS_SHMEM`.
    WP_HUGETLBFS_SHMEM, BEFORE_5_19, "<5.19", "UFFD_FEATURE_WP_HUGETLBFS_SHMEM is new in Linux 5.19"
);
prerequisite!(
    /// `UFFD_FEATURE_WP_UNPOPULATED`.
    WP_UNPOPULATED, "UFFD_FEATURE_WP_UNPOPULATED is new in Linux 6.4"
);
prerequisite!(
    /// `UFFDIO_POISON`.
    POISON, BEFORE_6_6, "<6.6", "UFFDIO_POISON (UFFD_FEATURE_POISON) is new in Linux 6.6"
);
prerequisite!(
    /// `UFFD_FEATURE_WP_ASYNC` and PAGEMAP_SCAN.
    WP_ASYNC, BEFORE_6_7, "<6.7", "UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN are new in Linux 6.7"
);
prerequisite!(
    /// `UFFDIO_MOVE`.
    MOVE, BEFORE_6_8, "<6.8", "UFFDIO_MOVE (UFFD_FEATURE_MOVE) is new in Linux 6.8"
);
prerequisite!(
    /// The write-protect features built on PTE markers, which a kernel built without
    /// CONFIG_PTE_MARKER_UFFD_WP does not offer (WP_HUGETLBFS_SHMEM, WP_UNPOPULATED, WP_ASYNC).
    PTE_MARKERS, NO_PTE_MARKERS, ">=5.19 when CONFIG_PTE_MARKER_UFFD_WP!=y",
    "the kernel is built without CONFIG_PTE_MARKER_UFFD_WP, which write-protect of shmem, hugetlb and unpopulated memory needs"
);
prerequisite!(
    /// `UFFD_FEATURE_MISSING_HUGETLBFS`.
    MISSING_HUGETLBFS, BEFORE_4_11_HUGETLBFS, "<4.11", "UFFD_FEATURE_MISSING_HUGETLBFS is new in Linux 4.11"
);
prerequisite!(
    /// `UFFD_FEATURE_MISSING_SHMEM`.
    MISSING_SHMEM, BEFORE_4_11_SHMEM, "<4.11", "UFFD_FEATURE_MISSING_SHMEM is new in Linux 4.11"
);

prerequisite!(
    /// 64 KiB huge pages (`HugeSize::Cont64K`: arm64's contiguous PTEs with 4 KiB pages): x86-64
    /// has 2 MiB and 1 GiB only (arch/x86/mm/hugetlbpage.c arch_hugetlb_valid_size), and arm64
    /// with 16 KiB or 64 KiB base pages has CONT_PTE_SIZE 2 MiB; rows for both.
    CONT_PTE_64K, NO_CONT_PTE_64K_ARCH, "* when arch!=arm64",
    NO_CONT_PTE_64K_PAGES, "* when arch=arm64 and CONFIG_ARM64_4K_PAGES!=y",
    "the kernel offers no 64 KiB huge pages: only arm64 with 4 KiB base pages has them (16 contiguous PTEs, arch/arm64/mm/hugetlbpage.c hugetlbpage_init)"
);
prerequisite!(
    /// 32 MiB huge pages (`HugeSize::Cont32M`: arm64's contiguous PMDs with 4 KiB pages, a PMD
    /// with 16 KiB): x86-64 lacks them, and so does arm64 with 64 KiB base pages (PMD_SIZE 512 MiB,
    /// CONT_PMD_SIZE 16 GiB); rows for both.
    CONT_PMD_32M, NO_CONT_PMD_32M_ARCH, "* when arch!=arm64",
    NO_CONT_PMD_32M_PAGES, "* when arch=arm64 and CONFIG_ARM64_64K_PAGES=y",
    "the kernel offers no 32 MiB huge pages: only arm64 has them, with 4 KiB base pages (16 contiguous PMDs) or 16 KiB (a PMD), not with 64 KiB (arch/arm64/mm/hugetlbpage.c hugetlbpage_init)"
);
