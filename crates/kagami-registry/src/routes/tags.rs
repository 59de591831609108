//! `GET /v2/<name>/tags/list`: the tags this node holds for a repository,
//! sorted. A repository of which no image is held is `NAME_UNKNOWN`, so a
//! client moves on to the next mirror. Pagination (`n`, `last`) is not
//! offered: a node holds a handful of tags per repository.

use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use kagami_core::store::Store;
use kagami_core::{Registry, Repository};
use serde::Serialize;

use super::bounded;
use crate::error::Error;

#[derive(Serialize)]
struct TagList<'a> {
    name: &'a str,
    tags: Vec<&'a str>,
}

/// Lists the tags of `repository` in `registry`.
pub(super) async fn list(
    store: &dyn Store,
    registry: &Registry,
    repository: Repository,
) -> Result<Response, Error> {
    let held_as = if registry.is_docker_hub() {
        repository.clone().for_docker_hub()
    } else {
        repository.clone()
    };
    let images = bounded("list_images", store.list_images()).await?;
    let mut tags: Vec<&str> = images
        .iter()
        .filter(|image| {
            image.reference.registry() == registry && *image.reference.repository() == held_as
        })
        .filter_map(|image| image.reference.tag().map(|tag| tag.as_str()))
        .collect();
    if tags.is_empty() {
        return Err(Error::RepositoryUnknown { repository });
    }
    tags.sort_unstable();
    tags.dedup();
    let body = serde_json::to_vec(&TagList {
        name: repository.as_str(),
        tags,
    })
    .map_err(|source| Error::Render {
        what: "tag list",
        source: source.into(),
    })?;
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}
