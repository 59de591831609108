//! Turning [`ImageSpec`]s into the exact bytes of each blob: layers as
//! streams (hashed once to learn their digests), configs and manifests as
//! small JSON documents.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Cursor, Read};

use kagami_core::{Digest, MediaType, Reference};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use super::{BuiltImage, ImageSpec};
use crate::hash::{Hasher, sha256};
use crate::names::parse_tagged;
use crate::oci_json::{self, Blob};

const BLOCK: u64 = 512;
/// Pseudo-random bytes are made in blocks of this size, so the stream does
/// not depend on how large the reader's buffer is.
const NOISE_BLOCK: usize = 64 * 1024;
const DEFAULT_PLATFORM: (&str, &str) = ("linux", "amd64");

/// How to make one layer's bytes: a tar holding one file of `payload`
/// pseudo-random bytes.
#[derive(Debug, Clone)]
struct Recipe {
    seed: u64,
    index: usize,
    payload: u64,
    len: u64,
}

impl Recipe {
    fn header(&self) -> io::Result<tar::Header> {
        let mut header = tar::Header::new_ustar();
        header.set_path(format!("layer-{}.bin", self.index))?;
        header.set_size(self.payload);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        Ok(header)
    }

    fn reader(&self) -> io::Result<impl Read + use<>> {
        let header = self.header()?.as_bytes().to_vec();
        let padding = self.len - BLOCK - self.payload;
        let noise = Noise {
            rng: SmallRng::seed_from_u64(self.seed),
            block: vec![0; NOISE_BLOCK],
            at: NOISE_BLOCK,
            remaining: self.payload,
        };
        Ok(Cursor::new(header)
            .chain(noise)
            .chain(io::repeat(0).take(padding)))
    }
}

/// One layer and its digest.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    recipe: Recipe,
    pub digest: Digest,
}

impl Layer {
    /// Plans a layer, reading it once to learn its digest.
    fn new(spec_seed: u64, index: usize, payload: u64) -> io::Result<Layer> {
        let recipe = Recipe {
            seed: mix(mix(spec_seed ^ 0x6b61_6761_6d69) ^ index as u64) ^ payload,
            index,
            payload,
            len: BLOCK + payload.div_ceil(BLOCK) * BLOCK + 2 * BLOCK,
        };
        let mut hasher = Hasher::new(kagami_core::Algorithm::Sha256);
        let mut reader = recipe.reader()?;
        let mut buffer = vec![0; 256 * 1024];
        loop {
            let n = reader.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        Ok(Layer {
            recipe,
            digest: hasher.finish(),
        })
    }

    /// The layer's size in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.recipe.len
    }

    /// The layer's bytes, generated as they are read.
    pub(crate) fn reader(&self) -> io::Result<impl Read + use<>> {
        self.recipe.reader()
    }

    fn blob(&self) -> io::Result<Blob> {
        let head = self.recipe.header()?.as_bytes()[..8].to_vec();
        Ok(Blob {
            // The importer's own rule, so docker archives get the digest the
            // importer will compute.
            media_type: crate::import::layer_type(&head),
            digest: self.digest.clone(),
            size: self.len(),
        })
    }
}

struct Noise {
    rng: SmallRng,
    block: Vec<u8>,
    at: usize,
    remaining: u64,
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        if self.at == self.block.len() {
            self.rng.fill_bytes(&mut self.block);
            self.at = 0;
        }
        let n = buf
            .len()
            .min(self.block.len() - self.at)
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// splitmix64's finaliser: nearby seeds give unrelated streams.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A small JSON blob and its digest.
#[derive(Debug, Clone)]
pub(crate) struct Json {
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

impl Json {
    fn new(bytes: Vec<u8>) -> Json {
        Json {
            digest: sha256(&bytes),
            bytes,
        }
    }
}

/// One platform's config and manifest.
#[derive(Debug, Clone)]
pub(crate) struct Platform {
    pub config: Json,
    pub manifest: Json,
}

/// Everything needed to write one image.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub spec: ImageSpec,
    pub built: BuiltImage,
    pub layers: Vec<Layer>,
    pub platforms: Vec<Platform>,
    pub index: Option<Json>,
}

impl Plan {
    /// The manifest or index the name points at.
    pub(crate) fn top(&self) -> Option<&Json> {
        self.index
            .as_ref()
            .or_else(|| self.platforms.first().map(|p| &p.manifest))
    }
}

/// Plans every spec; a layer shared by several specs is hashed once.
pub(crate) fn plan_all(specs: &[ImageSpec]) -> io::Result<Vec<Plan>> {
    let mut layers: HashMap<(u64, usize, u64), Layer> = HashMap::new();
    specs
        .iter()
        .map(|spec| {
            let mut mine = Vec::new();
            for (index, size) in spec.layer_sizes.iter().enumerate() {
                let key = (spec.seed, index, *size);
                if let Entry::Vacant(slot) = layers.entry(key) {
                    slot.insert(Layer::new(spec.seed, index, *size)?);
                }
                mine.extend(layers.get(&key).cloned());
            }
            plan(spec, mine)
        })
        .collect()
}

fn plan(spec: &ImageSpec, layers: Vec<Layer>) -> io::Result<Plan> {
    let reference: Reference = parse_tagged(&spec.reference)
        .map_err(|reason| io::Error::new(io::ErrorKind::InvalidInput, reason))?;
    let targets: Vec<(&str, &str)> = if spec.platforms.is_empty() {
        vec![DEFAULT_PLATFORM]
    } else {
        spec.platforms
            .iter()
            .map(|(os, arch)| (os.as_str(), arch.as_str()))
            .collect()
    };
    let layer_blobs = layers
        .iter()
        .map(Layer::blob)
        .collect::<io::Result<Vec<_>>>()?;
    let platforms: Vec<Platform> = targets
        .iter()
        .map(|(os, arch)| {
            let config = Json::new(config_json(&reference, os, arch, &layers));
            let config_blob = Blob {
                media_type: oci_json::CONFIG_TYPE,
                digest: config.digest.clone(),
                size: config.bytes.len() as u64,
            };
            let manifest = Json::new(oci_json::image_manifest(&config_blob, &layer_blobs));
            Platform { config, manifest }
        })
        .collect();
    let index = (!spec.platforms.is_empty()).then(|| Json::new(index_json(&targets, &platforms)));

    let mut blobs = BTreeMap::new();
    for layer in &layers {
        blobs.insert(layer.digest.clone(), layer.len());
    }
    let mut manifests = Vec::new();
    manifests.extend(index.iter().map(|i| i.digest.clone()));
    for platform in &platforms {
        blobs.insert(
            platform.config.digest.clone(),
            platform.config.bytes.len() as u64,
        );
        manifests.push(platform.manifest.digest.clone());
    }
    let built = BuiltImage {
        reference,
        digest: manifests[0].clone(),
        media_type: if index.is_some() {
            MediaType::OciIndex
        } else {
            MediaType::OciManifest
        },
        manifests,
        blobs,
    };
    Ok(Plan {
        spec: spec.clone(),
        built,
        layers,
        platforms,
        index,
    })
}

fn config_json(reference: &Reference, os: &str, arch: &str, layers: &[Layer]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
    let config = serde_json::json!({
        "architecture": arch,
        "os": os,
        "created": "1970-01-01T00:00:00Z",
        "config": { "Labels": { "org.kagami.fixture": reference.to_string() } },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    serde_json::to_vec(&config).unwrap_or_default()
}

fn index_json(targets: &[(&str, &str)], platforms: &[Platform]) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = targets
        .iter()
        .zip(platforms)
        .map(|((os, arch), p)| {
            serde_json::json!({
                "mediaType": MediaType::OciManifest.as_str(),
                "digest": p.manifest.digest.to_string(),
                "size": p.manifest.bytes.len(),
                "platform": { "architecture": arch, "os": os },
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MediaType::OciIndex.as_str(),
        "manifests": manifests,
    });
    serde_json::to_vec(&index).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_reproducible_and_tar_shaped() {
        let a = Layer::new(7, 0, 100_000).unwrap();
        let b = Layer::new(7, 0, 100_000).unwrap();
        let c = Layer::new(8, 0, 100_000).unwrap();
        assert_eq!(a.digest, b.digest);
        assert_ne!(a.digest, c.digest);
        let mut bytes = Vec::new();
        a.reader().unwrap().read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, a.len());
        assert_eq!(sha256(&bytes), a.digest);
        let mut tar = tar::Archive::new(&bytes[..]);
        let entries: Vec<_> = tar.entries().unwrap().map(|e| e.unwrap().size()).collect();
        assert_eq!(entries, vec![100_000]);
    }

    #[test]
    fn noise_does_not_depend_on_read_sizes() {
        let layer = Layer::new(1, 2, 200_001).unwrap();
        let mut small = Vec::new();
        let mut reader = layer.reader().unwrap();
        let mut buf = [0u8; 77];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            small.extend_from_slice(&buf[..n]);
        }
        assert_eq!(sha256(&small), layer.digest);
    }
}
