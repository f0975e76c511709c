//! Rebuild when migrations change: they are embedded at compile time by a
//! macro, and cargo does not otherwise notice a new or edited SQL file.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=sql");
}
