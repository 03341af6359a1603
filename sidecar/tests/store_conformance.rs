//! One conformance suite for every store: a directory and an S3 bucket (Garage) must
//! behave the same for streamed uploads, commits, aborts, listing and deletion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use arca::store::{Chunk, Store};
use bytes::Bytes;
use tokio::sync::mpsc;

async fn put(
    store: &Store,
    key: &str,
    data: &[u8],
    commit: bool,
) -> Result<u64, arca::store::StoreError> {
    let (tx, rx) = mpsc::channel(4);
    let owned = data.to_vec();
    let feeder = tokio::spawn(async move {
        for c in owned.chunks(1 << 20) {
            if tx
                .send(Chunk::Data(Bytes::copy_from_slice(c)))
                .await
                .is_err()
            {
                return;
            }
        }
        if commit {
            let _ = tx.send(Chunk::Commit).await;
        }
    });
    let r = store.put_stream(key, rx, Some(data.len() as u64)).await;
    feeder.await.unwrap();
    r
}

async fn conformance(store: Store) {
    store.probe().await.expect("probe");
    // Small and multipart-sized objects round-trip.
    let small = b"hello arca".to_vec();
    let big: Vec<u8> = (0..21 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    assert_eq!(
        put(&store, "p/20260101T000000Z/small", &small, true)
            .await
            .unwrap(),
        small.len() as u64
    );
    assert_eq!(
        put(&store, "p/20260101T000000Z/big", &big, true)
            .await
            .unwrap(),
        big.len() as u64
    );
    assert_eq!(
        store
            .get_bytes("p/20260101T000000Z/small")
            .await
            .unwrap()
            .unwrap()
            .to_vec(),
        small
    );
    assert_eq!(
        store
            .get_bytes("p/20260101T000000Z/big")
            .await
            .unwrap()
            .unwrap()
            .to_vec(),
        big
    );
    let (mut r, len) = store.get_stream("p/20260101T000000Z/big").await.unwrap();
    assert_eq!(len, big.len() as u64);
    let mut back = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut r, &mut back)
        .await
        .unwrap();
    assert_eq!(back, big);

    // An upload that ends without commit leaves nothing behind.
    let err = put(&store, "p/20260102T000000Z/aborted", &big, false)
        .await
        .expect_err("aborted");
    assert!(err.to_string().contains("aborted"), "{err}");
    assert_eq!(
        store.get_bytes("p/20260102T000000Z/aborted").await.unwrap(),
        None
    );

    // Listing: folders one level down, objects recursively.
    store
        .put_bytes(
            "p/20260103T000000Z/manifest.json",
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    let dirs = store.list_dirs("p/").await.unwrap();
    assert!(dirs.contains(&"20260101T000000Z".to_string()), "{dirs:?}");
    assert!(dirs.contains(&"20260103T000000Z".to_string()), "{dirs:?}");
    let objs = store.list_objects("p/20260101T000000Z/").await.unwrap();
    let keys: Vec<&str> = objs.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        vec!["p/20260101T000000Z/big", "p/20260101T000000Z/small"]
    );
    assert_eq!(objs[0].size, big.len() as u64);

    // Missing objects: None for get_bytes, NotFound for get_stream; delete is idempotent.
    assert_eq!(store.get_bytes("p/none/x").await.unwrap(), None);
    assert!(store.get_stream("p/none/x").await.is_err());
    for k in [
        "p/20260101T000000Z/small",
        "p/20260101T000000Z/big",
        "p/20260103T000000Z/manifest.json",
    ] {
        store.delete(k).await.unwrap();
        store.delete(k).await.unwrap();
        assert_eq!(store.get_bytes(k).await.unwrap(), None);
    }
    assert!(store.list_objects("p/").await.unwrap().is_empty());
}

#[tokio::test]
async fn directory_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Store::Path(arca::store::path::PathStore::new(
        dir.path().join("root"),
    )))
    .await;
    // Nothing temporary is left behind.
    let left = common::sh(&format!("find '{}' -type f | wc -l", dir.path().display()));
    assert_eq!(left.trim(), "0");
}

#[tokio::test]
async fn s3_store_conforms() {
    conformance(common::s3_store(&common::unique("conformance"))).await;
}

/// A run killed mid-upload leaves an incomplete multipart upload (invisible in listings,
/// but kept and billed by S3); prune aborts those older than its cutoff, and only those.
#[tokio::test]
async fn s3_store_aborts_stale_uploads_of_killed_runs() {
    let store = common::s3_store(&common::unique("stale-uploads"));
    store.probe().await.expect("probe");
    let (tx, rx) = mpsc::channel(4);
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel();
    let feeder = tokio::spawn(async move {
        // Three parts' worth (the default part is 8 MiB), then the "process" hangs.
        for i in 0..24u32 {
            let chunk: Vec<u8> = (0..1 << 20).map(|j: u32| (j ^ i) as u8).collect();
            tx.send(Chunk::Data(Bytes::from(chunk))).await.unwrap();
        }
        let _ = sent_tx.send(());
        std::future::pending::<()>().await;
        drop(tx);
    });
    let s = store.clone();
    let upload =
        tokio::spawn(async move { s.put_stream("p/20260104T000000Z/killed", rx, None).await });
    sent_rx.await.unwrap();
    // Killed: neither commit nor the abort path runs.
    upload.abort();
    assert!(upload.await.unwrap_err().is_cancelled());
    feeder.abort();
    assert_eq!(
        store.get_bytes("p/20260104T000000Z/killed").await.unwrap(),
        None,
        "an unfinished upload is not an object"
    );

    // Younger than the cutoff: kept (a run may still be writing it).
    let past = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    assert!(store
        .abort_stale_uploads("p/", past)
        .await
        .unwrap()
        .is_empty());
    // Older than the cutoff: aborted, once.
    let future = chrono::Utc::now() + chrono::TimeDelta::minutes(5);
    assert_eq!(
        store.abort_stale_uploads("p/", future).await.unwrap(),
        vec!["p/20260104T000000Z/killed".to_string()]
    );
    assert!(store
        .abort_stale_uploads("p/", future)
        .await
        .unwrap()
        .is_empty());
}
