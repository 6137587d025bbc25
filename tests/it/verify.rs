//! `verify` and `verify --repair` against real damage: a flipped byte, a deleted blob, a file
//! missing from a tree, a tree file replaced by another; repair from the upstream test server,
//! and what happens when that server is gone.
