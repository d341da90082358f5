//! Artifacts are immutable: writing a name again makes a new version beside the
//! first, and every version stays readable with the bytes its row describes. On
//! every backend (SQLite keeps files, PostgreSQL keeps contents in the database).

mod common;

use common::{Backend, Fresh};
use harness_core::*;
use harness_store::{StepCommit, Store};
use sha2::{Digest, Sha256};

/// A store with one running request.
async fn running(b: Backend) -> Option<(Fresh, Store, Request)> {
    let fresh = b.fresh()?;
    let store = fresh.store.clone();
    let req = harness_store::testing::running_request(&store, "s1").await;
    Some((fresh, store, req))
}

/// Writes `name` with `bytes` and commits its row, as a run does.
async fn write(store: &Store, req: &Request, name: &str, bytes: &[u8]) -> Artifact {
    let a = store
        .put_artifact(
            &req.id,
            &req.session_id,
            name,
            "text/plain",
            bytes,
            Timestamp(3),
        )
        .await
        .unwrap();
    let commit = StepCommit::new(&req.id, &req.session_id, Timestamp(3)).artifacts(vec![a.clone()]);
    store.commit_step(commit).await.unwrap();
    a
}

on_both!(
    writing_a_name_twice_keeps_both_versions,
    writing_a_name_twice_keeps_both_versions_on_postgres,
    versions
);

async fn versions(b: Backend) {
    let Some((_fresh, store, req)) = running(b).await else {
        return;
    };
    let first = write(&store, &req, "report.txt", b"first draft").await;
    let second = write(&store, &req, "report.txt", b"final").await;
    let other = write(&store, &req, "other.txt", b"x").await;

    let listed = store.artifacts(&req.id).await.unwrap();
    assert_eq!(listed.len(), 3, "{listed:#?}");
    let versions: Vec<(&str, u32)> = listed
        .iter()
        .map(|a| (a.name.as_str(), a.version))
        .collect();
    assert_eq!(
        versions,
        [("other.txt", 1), ("report.txt", 1), ("report.txt", 2)]
    );
    assert_eq!((first.version, second.version, other.version), (1, 2, 1));
    assert_ne!(first.id, second.id);
    for (a, bytes) in [
        (&first, &b"first draft"[..]),
        (&second, b"final"),
        (&other, b"x"),
    ] {
        let row = listed.iter().find(|r| r.id == a.id).expect("row kept");
        assert_eq!(row, a);
        let stored = store
            .read_artifact(row)
            .await
            .unwrap()
            .expect("contents kept");
        assert_eq!(stored, bytes, "{} v{}", row.name, row.version);
        assert_eq!(row.sha256, hex::encode(Sha256::digest(&stored)));
        // Found by id alone, as the HTTP API's download reads it.
        assert_eq!(&store.get_artifact(&a.id).await.unwrap(), a);
    }
    let unknown = ArtifactId::generate();
    let err = store.get_artifact(&unknown).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
    assert!(err.to_string().contains(unknown.as_str()), "{err}");
}

on_both!(
    names_cannot_escape_the_request_folder,
    names_are_refused_on_postgres,
    names
);

async fn names(b: Backend) {
    let Some((fresh, store, req)) = running(b).await else {
        return;
    };
    for bad in [
        "../x",
        "a/b",
        "..",
        "a\\b",
        "",
        "..hidden",
        "x\ny",
        "../../harness.db",
    ] {
        let err = store
            .put_artifact(
                &req.id,
                &req.session_id,
                bad,
                "text/plain",
                b"x",
                Timestamp(3),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("artifact name"), "{bad:?}: {err}");
    }
    // The same name twice more: every file stays inside the store's artifact folders.
    for _ in 0..2 {
        write(&store, &req, "report.txt", b"y").await;
    }
    let Some(dir) = &fresh.dir else { return };
    let mut files = Vec::new();
    for folder in ["artifacts", "artifact-versions"] {
        walk(&dir.path().join(folder), &mut files);
    }
    assert_eq!(files.len(), 2, "{files:?}");
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains('x') && !n.starts_with("harness.db") && n != "store.json")
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
}

on_both!(
    pruning_a_request_removes_every_version,
    pruning_a_request_removes_every_version_on_postgres,
    pruning
);

async fn pruning(b: Backend) {
    let Some((fresh, store, req)) = running(b).await else {
        return;
    };
    let first = write(&store, &req, "report.txt", b"1").await;
    let second = write(&store, &req, "report.txt", b"2").await;
    let done = StepCommit::new(&req.id, &req.session_id, Timestamp(4)).output("ok");
    store.commit_step(done).await.unwrap();
    let report = store.prune(Timestamp(100), false, false).await.unwrap();
    assert_eq!((report.artifacts, report.artifact_bytes), (2, 2));
    for a in [&first, &second] {
        assert_eq!(
            store.read_artifact(a).await.unwrap(),
            None,
            "v{} left behind",
            a.version
        );
    }
    let Some(dir) = &fresh.dir else { return };
    for folder in ["artifacts", "artifact-versions"] {
        let left: Vec<_> = std::fs::read_dir(dir.path().join(folder))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{folder}: {left:?}");
    }
}

fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}
