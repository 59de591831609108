//! `/healthz` and `/readyz`.

use kagami_registry::{Config, Readiness};

use crate::support::*;

#[tokio::test]
async fn healthz_is_always_ok() {
    let store = MemoryStore::new();
    let app = app_with(&store, Config::default(), Readiness::new());
    let answer = get(&app, "/healthz").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "ok");
}

#[tokio::test]
async fn readyz_follows_the_readiness_handle() {
    let store = MemoryStore::new();
    let readiness = Readiness::new();
    let app = app_with(&store, Config::default(), readiness.clone());
    assert!(!readiness.is_ready());
    assert_eq!(get(&app, "/readyz").await.status, 503);
    readiness.set_ready(true);
    assert_eq!(get(&app, "/readyz").await.status, 200);
    readiness.clone().set_ready(false);
    assert_eq!(get(&app, "/readyz").await.status, 503);
}
