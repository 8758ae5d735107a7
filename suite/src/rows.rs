//! Expectation rows that many behaviours share, chiefly those for kernels that lack a
//! prerequisite, and the wording of each missing prerequisite: `require.rs` words its `unsupported`
//! reasons with the same text, so a cell's reason reads like the rule it was graded against.

/// Declares a prerequisite's wording once: `$why` (what a cell says) and the expectation row
/// `$row` for the kernels that lack it (`(range, "unsupported: $why")`).
macro_rules! prerequisite {
($(#[$doc:meta])* $why:ident, $row:ident, $range:literal, $text:literal) => {
    $(#[$doc])*
    pub const $why: &str = $text;
    $(#[$doc])*
    pub const $row: (&str, &str) = ($range, concat!("unsupported: ", $text));
};
}

// Expectation rows for kernels that lack a prerequisite, worded as the `require` helpers word it.
prerequisite!(
    /// userfaultfd(2) itself.
    BUILT_WITHOUT, NO_USERFAULTFD, "* when CONFIG_USERFAULTFD!=y", "the kernel is built without CONFIG_USERFAULTFD"
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
