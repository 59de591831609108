//! The images scenarios pull: as Spegel's benchmark makes them, a given
//! total size split over 1 or more layers of incompressible (pseudo-random)
//! bytes, written as an OCI layout for skopeo to push.

use std::path::Path;

use kagami_store::testing::{BuiltImage, ImageSpec, write_layout};

use crate::Error;

/// One image of `total` bytes in `layers` layers, named `reference`
/// (`10.99.0.2:5000/bed/app:1`); `seed` makes its bytes its own.
pub fn spec(reference: &str, total: u64, layers: u32, seed: u64) -> ImageSpec {
    let layers = u64::from(layers.max(1));
    let each = (total / layers).max(1);
    let sizes: Vec<u64> = (0..layers).map(|_| each).collect();
    ImageSpec::new(reference, &sizes).seed(seed)
}

/// Writes `spec` as an OCI layout in `dir` (its tag as the layout's
/// `ref.name`) and returns what it holds.
pub fn write(dir: &Path, spec: &ImageSpec) -> Result<BuiltImage, Error> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    write_layout(dir, std::slice::from_ref(spec))
        .map_err(Error::io(dir))?
        .pop()
        .ok_or_else(|| Error::Check("the image fixture wrote nothing".to_owned()))
}

/// Bytes of the image's blobs (configs and layers).
pub fn blob_bytes(image: &BuiltImage) -> u64 {
    image.blobs.values().sum()
}
