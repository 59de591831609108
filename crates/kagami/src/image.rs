//! `kagami image …`: import, list and remove images of the built-in store,
//! and collect what interrupted imports left behind.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kagami_core::Reference;
use kagami_core::store::Store;
use kagami_store::Layout;

async fn open(data_dir: &Path) -> anyhow::Result<Layout> {
    let dir = kagami::layout_dir(data_dir);
    Layout::open(&dir)
        .await
        .with_context(|| format!("cannot open the image store in {}", dir.display()))
}

/// Imports each archive in turn, printing what each added.
pub async fn import(data_dir: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    let layout = open(data_dir).await?;
    for file in files {
        let images = layout
            .import(file)
            .await
            .with_context(|| format!("cannot import {}", file.display()))?;
        for image in images {
            println!("imported {} {}", image.reference, image.digest);
        }
    }
    Ok(())
}

/// Prints the images, sorted by reference.
pub async fn list(data_dir: &Path, quiet: bool) -> anyhow::Result<()> {
    let layout = open(data_dir).await?;
    let mut images = layout.list_images().await.context("cannot list images")?;
    images.sort_by(|a, b| a.reference.cmp(&b.reference));
    if quiet {
        for image in images {
            println!("{}", image.reference);
        }
        return Ok(());
    }
    let width = images
        .iter()
        .map(|i| i.reference.to_string().len())
        .max()
        .unwrap_or(0)
        .max("REF".len());
    println!("{:width$}  {:71}  TYPE", "REF", "DIGEST");
    for image in images {
        println!(
            "{:width$}  {:71}  {}",
            image.reference.to_string(),
            image.digest.to_string(),
            image.media_type
        );
    }
    Ok(())
}

/// Removes each named image; all names are checked before any is removed.
pub async fn remove(data_dir: &Path, references: &[String]) -> anyhow::Result<()> {
    let references = references
        .iter()
        .map(|r| {
            r.parse::<Reference>()
                .with_context(|| format!("bad reference {r:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let layout = open(data_dir).await?;
    for reference in references {
        let image = layout
            .remove(&reference)
            .await
            .with_context(|| format!("cannot remove {reference}"))?;
        println!("removed {} {}", image.reference, image.digest);
    }
    Ok(())
}

/// Removes the blobs no image references and what interrupted imports
/// left in the store's scratch directory, and says how much that was.
pub async fn gc(data_dir: &Path) -> anyhow::Result<()> {
    let layout = open(data_dir).await?;
    let collected = layout
        .collect_garbage()
        .await
        .context("cannot collect the store's garbage")?;
    println!(
        "removed {} and {}, freeing {} bytes",
        count(
            collected.blobs_removed,
            "unreferenced blob",
            "unreferenced blobs"
        ),
        count(
            collected.temp_entries_removed,
            "temporary entry",
            "temporary entries"
        ),
        collected.bytes_freed
    );
    Ok(())
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
