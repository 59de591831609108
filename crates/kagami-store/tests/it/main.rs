//! Integration tests of the image-layout store: the conformance kit, every
//! archive format, bad and hostile input (decompression bombs too),
//! collecting what crashed imports leave, watching another writer, large
//! layers, and archives written by skopeo.

mod bad_input;
mod bombs;
mod conformance;
mod corrupt;
mod formats;
mod large;
mod open;
mod orphans;
mod skopeo;
mod support;
mod watch;
