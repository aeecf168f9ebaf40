//! What the examples (the node, the bench) and the tests share: a small
//! TCP node for any application on walden-raft ([`node`], [`network`]) and
//! the key-value map application ([`kv`]). Included by path
//! (`#[path = "../examples/common/mod.rs"]`), not part of the library.
#![allow(dead_code)]

pub mod kv;
pub mod network;
pub mod node;
