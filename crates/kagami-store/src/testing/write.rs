//! Writing planned images out: as an OCI layout (into a tar or a
//! directory) or as a `docker save` archive.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use kagami_core::Digest;

use super::plan::{Json, Plan};
use super::sink::{DirSink, Sink, TarSink};
use super::{ArchiveFormat, Compression};
use crate::hash::sha256;
use crate::index_file::{Descriptor, IndexFile};
use crate::names::annotations_for;

/// Writes an archive under a fresh name in `dir`.
pub(crate) fn archive(
    dir: &Path,
    plans: &[Plan],
    format: ArchiveFormat,
    compression: Compression,
) -> io::Result<PathBuf> {
    if format == ArchiveFormat::Docker && plans.iter().any(|p| p.index.is_some()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "docker archives hold single-platform images only",
        ));
    }
    let suffix = match compression {
        Compression::None => ".tar",
        Compression::Gzip => ".tar.gz",
        Compression::Zstd => ".tar.zst",
    };
    let prefix = match format {
        ArchiveFormat::Oci => "oci-",
        ArchiveFormat::Docker => "docker-",
    };
    let path = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(suffix)
        .tempfile_in(dir)?
        .into_temp_path()
        .keep()
        .map_err(|e| e.error)?;
    let written = TarSink::create(&path, compression).and_then(|mut sink| {
        match format {
            ArchiveFormat::Oci => oci(&mut sink, plans)?,
            ArchiveFormat::Docker => docker(&mut sink, plans)?,
        }
        sink.finish()
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Writes an OCI layout directory at `dir`.
pub(crate) fn layout(dir: &Path, plans: &[Plan]) -> io::Result<()> {
    oci(
        &mut DirSink {
            root: dir.to_owned(),
        },
        plans,
    )
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

/// The OCI image layout: blobs first, then `index.json` (readers must not
/// rely on the index coming first).
fn oci(sink: &mut dyn Sink, plans: &[Plan]) -> io::Result<()> {
    sink.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut written = BTreeSet::new();
    let mut index = IndexFile::empty();
    for plan in plans {
        for layer in &plan.layers {
            if written.insert(layer.digest.clone()) {
                sink.file(&blob_path(&layer.digest), layer.len(), &mut layer.reader()?)?;
            }
        }
        let jsons = plan
            .platforms
            .iter()
            .flat_map(|p| [&p.config, &p.manifest])
            .chain(plan.index.iter());
        for json in jsons {
            if written.insert(json.digest.clone()) {
                sink.bytes(&blob_path(&json.digest), &json.bytes)?;
            }
        }
        let top = top(plan)?;
        index.manifests.push(Descriptor {
            media_type: Some(plan.built.media_type.as_str().to_owned()),
            digest: top.digest.clone(),
            size: top.bytes.len() as u64,
            annotations: Some(annotations_for(&plan.built.reference)),
            extra: Default::default(),
        });
    }
    sink.bytes(
        "index.json",
        &serde_json::to_vec(&index).map_err(io::Error::other)?,
    )
}

fn top(plan: &Plan) -> io::Result<&Json> {
    plan.top()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "an image without manifest"))
}

/// What `docker save` writes: per layer a `<id>/` directory (`VERSION`,
/// `json`, `layer.tar`, the latter a symlink when an earlier directory holds
/// the same bytes), `<hex>.json` configs, `repositories`, and
/// `manifest.json` last.
fn docker(sink: &mut dyn Sink, plans: &[Plan]) -> io::Result<()> {
    let mut first_dir: HashMap<Digest, String> = HashMap::new();
    let mut configs = BTreeSet::new();
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for plan in plans {
        let config = &plan
            .platforms
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "an image without config"))?
            .config;
        let config_name = format!("{}.json", config.digest.hex());
        if configs.insert(config.digest.clone()) {
            sink.bytes(&config_name, &config.bytes)?;
        }
        let mut layer_paths = Vec::new();
        let mut parent = String::new();
        for (i, layer) in plan.layers.iter().enumerate() {
            let id_text = format!("{}\n{i}\n{}", plan.spec.reference, layer.digest);
            let id = sha256(id_text.as_bytes()).hex().to_owned();
            let v1 = serde_json::json!({ "id": id, "parent": parent, "created": "1970-01-01T00:00:00Z" });
            sink.bytes(&format!("{id}/VERSION"), b"1.0")?;
            sink.bytes(
                &format!("{id}/json"),
                &serde_json::to_vec(&v1).map_err(io::Error::other)?,
            )?;
            let tar_path = format!("{id}/layer.tar");
            match first_dir.get(&layer.digest) {
                Some(first) if *first != id => {
                    sink.symlink(&tar_path, &format!("../{first}/layer.tar"))?
                }
                Some(_) => {}
                None => {
                    sink.file(&tar_path, layer.len(), &mut layer.reader()?)?;
                    first_dir.insert(layer.digest.clone(), id.clone());
                }
            }
            layer_paths.push(tar_path);
            parent = id;
        }
        manifest.push(serde_json::json!({
            "Config": config_name,
            "RepoTags": [plan.spec.reference],
            "Layers": layer_paths,
        }));
        let reference = &plan.built.reference;
        let tag = reference.tag().map(|t| t.to_string()).unwrap_or_default();
        repositories
            .entry(reference.name())
            .or_default()
            .insert(tag, parent);
    }
    sink.bytes(
        "repositories",
        &serde_json::to_vec(&repositories).map_err(io::Error::other)?,
    )?;
    sink.bytes(
        "manifest.json",
        &serde_json::to_vec(&manifest).map_err(io::Error::other)?,
    )
}
