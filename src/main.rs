//! `idv`: the one binary.
fn main() {}
