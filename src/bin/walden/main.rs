//! The `walden` command line.

fn main() {
    println!("walden {}", env!("CARGO_PKG_VERSION"));
}
