//! Integration tests of the image-layout store: the conformance kit, every
//! archive format, bad and hostile input (decompression bombs too),
//! collecting what crashed imports leave, watching another writer, large
//! layers, archives written by skopeo, and the pull-through cache.

mod bad_input;
mod bombs;
mod conformance;
mod corrupt;
mod formats;
mod large;
mod open;
mod orphans;
mod skopeo;
mod spool;
mod support;
mod watch;
