//! The suite embeds the git revision `cargo xtask` builds it from (`UFFDC_SUITE_REV`, read with
//! `option_env!`); rebuild when it changes.
fn main() {
    println!("cargo:rerun-if-env-changed=UFFDC_SUITE_REV");
}
