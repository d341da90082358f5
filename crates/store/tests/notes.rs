//! Operator notes: a `note.added` event about the request, refused (nothing
//! written) for an unknown request or approval, or an approval of another request.

mod common;

use common::{Backend, paused_request};
use harness_core::*;
use harness_store::StoreError;

on_both!(
    notes_are_events_about_their_request,
    notes_are_events_about_their_request_on_postgres,
    notes
);

async fn notes(b: Backend) {
    let Some(fresh) = b.fresh() else { return };
    let store = &fresh.store;
    let now = Timestamp(1_000_000);
    let (r, a) = paused_request(store, 1, now, 1_000).await;
    let (other, _) = paused_request(store, 2, now, 1_000).await;
    let note = |request: &Request, approval: Option<&ApprovalId>, text: &str| Note {
        request_id: request.id.clone(),
        approval_id: approval.cloned(),
        by: "alice".into(),
        text: text.into(),
    };
    let before = store.last_seq().await.unwrap();
    let e = store
        .add_note(note(&r, Some(&a.id), "checking with the customer"), now)
        .await
        .unwrap();
    assert_eq!(e.kind, EventKind::NoteAdded);
    assert_eq!(e.request_id.as_ref(), Some(&r.id));
    assert_eq!(e.session_id.as_ref(), Some(&r.session_id));
    assert_eq!(e.payload["approval_id"], a.id.as_str());
    assert_eq!(e.payload["text"], "checking with the customer");
    // The event a reader sees is the one returned.
    let seen = store
        .events_after(before, EventFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(seen, vec![e]);
    // Deciding nothing.
    let still = store.get_approval(&a.id).await.unwrap();
    assert_eq!(still.status, ApprovalStatus::Pending);

    let refused = [
        store.add_note(note(&other, Some(&a.id), "x"), now).await,
        store
            .add_note(note(&r, Some(&ApprovalId::generate()), "x"), now)
            .await,
        store
            .add_note(
                Note {
                    request_id: RequestId::generate(),
                    ..note(&r, None, "x")
                },
                now,
            )
            .await,
    ];
    assert!(
        matches!(refused[0], Err(StoreError::ApprovalMismatch { .. })),
        "{:?}",
        refused[0]
    );
    assert!(
        matches!(
            refused[1],
            Err(StoreError::NotFound {
                kind: "approval",
                ..
            })
        ),
        "{:?}",
        refused[1]
    );
    assert!(
        matches!(
            refused[2],
            Err(StoreError::NotFound {
                kind: "request",
                ..
            })
        ),
        "{:?}",
        refused[2]
    );
    let after = store
        .events_after(before, EventFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(after.len(), 1, "a refused note writes nothing");
}
