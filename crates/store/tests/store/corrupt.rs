//! Rows edited from outside the broker: a grant state or a token scope the store does not know is
//! corrupt data (never a panic, a default or a scope silently dropped). Each backend is edited
//! through a connection of its own, with the same statements.

use breakglass_core::{Scope, StateKind};
use breakglass_store::{SqliteStore, Store, StoreError};

use super::{initialized, request, t, token};
use crate::pgdb::TestDb;

/// What the edits below change: one grant, one scoped token.
async fn arranged(store: &dyn Store) {
    initialized(store).await;
    store.insert_grant(&request(30), &[], t(2)).await.unwrap();
    let mut scoped = token("t1", "alice");
    scoped.scopes = Some(vec![Scope::Read, Scope::Credential]);
    store.create_token(&scoped, &[], t(3)).await.unwrap();
    assert_eq!(
        store
            .grant_counts()
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        [(StateKind::Requested, 1)]
    );
}

/// Valid SQL on both backends.
const EDITS: [&str; 2] = [
    "UPDATE grants SET state = 'paused'",
    r#"UPDATE api_tokens SET scopes = '["read","fly"]' WHERE id = 't1'"#,
];

async fn unknown_names_are_corrupt(store: &dyn Store) {
    let err = store.grant_counts().await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "stored data is corrupt: unknown grant state `paused`"
    );
    let err = store.token("t1").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "stored data is corrupt: unknown token scope `fly`"
    );
    assert!(matches!(store.tokens().await, Err(StoreError::Corrupt(_))));
}

#[tokio::test]
async fn unknown_stored_names_are_corrupt_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bg.db");
    let store = SqliteStore::open(&path).await.unwrap();
    arranged(&store).await;
    let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    for edit in EDITS {
        sqlx::query(edit).execute(&mut c).await.unwrap();
    }
    unknown_names_are_corrupt(&store).await;
}

#[tokio::test]
async fn unknown_stored_names_are_corrupt_on_postgres() {
    let db = TestDb::create().await;
    let store = breakglass_store::PostgresStore::open(&db.url)
        .await
        .unwrap();
    arranged(&store).await;
    let mut c = db.connect().await;
    for edit in EDITS {
        sqlx::query(edit).execute(&mut c).await.unwrap();
    }
    unknown_names_are_corrupt(&store).await;
    store.close().await;
}
