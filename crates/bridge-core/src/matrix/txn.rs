//! Transaction IDs for the events the bridge sends, derived from what caused them.
//!
//! The homeserver deduplicates a `PUT /send/{type}/{txnId}` (and `/redact/…/{txnId}`) it
//! has already seen from the same user. When the bridge derives the ID from the cause of the
//! send — the inbox event being handled, a remote message's part — a replay of that cause
//! after a crash sends with the same IDs, and the homeserver answers with the events it
//! already has instead of creating them twice.
//!
//! A cause is declared with [`scoped`]: every send awaited inside the future gets the IDs
//! `<hash of the key>.<n>` for n = 0, 1, … in order. Sends outside any scope (a background
//! task, a login flow) get random IDs. Scopes nest: the innermost one counts.

use std::{
    future::Future,
    sync::atomic::{AtomicU32, Ordering},
};

use ruma::{OwnedTransactionId, TransactionId};

tokio::task_local! {
    static SCOPE: Scope;
}

struct Scope {
    base: String,
    next: AtomicU32,
}

/// Runs `fut` with the sends inside it numbered from the cause `key` (an inbox event ID, a
/// remote message part, …). The same key and the same sequence of sends give the same IDs.
pub async fn scoped<F: Future>(key: &str, fut: F) -> F::Output {
    let scope = Scope { base: base_of(key), next: AtomicU32::new(0) };
    SCOPE.scope(scope, fut).await
}

/// The transaction ID for the next send: from the current scope, else random.
pub fn next_txn_id() -> OwnedTransactionId {
    SCOPE
        .try_with(|scope| {
            let n = scope.next.fetch_add(1, Ordering::Relaxed);
            OwnedTransactionId::from(format!("{}.{n}", scope.base))
        })
        .unwrap_or_else(|_| TransactionId::new())
}

/// A short, URL-safe digest of a key (keys may hold any characters).
fn base_of(key: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("br{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scopes_number_their_sends_and_repeat_on_replay() {
        let first = scoped("$event:a", async { (next_txn_id(), next_txn_id()) }).await;
        let replay = scoped("$event:a", async { (next_txn_id(), next_txn_id()) }).await;
        assert_eq!(first, replay, "the same cause gives the same IDs");
        assert_ne!(first.0, first.1, "sends within a cause differ");
        let other = scoped("$event:b", async { next_txn_id() }).await;
        assert_ne!(other, first.0);
        // Nested: the inner scope counts on its own, the outer one goes on after it.
        let (outer0, inner0, outer1) = scoped("outer", async {
            let a = next_txn_id();
            let b = scoped("inner", async { next_txn_id() }).await;
            (a, b, next_txn_id())
        })
        .await;
        assert_eq!(inner0, scoped("inner", async { next_txn_id() }).await);
        assert_ne!(outer0, outer1);
        // Outside a scope: random, never repeated.
        assert_ne!(next_txn_id(), next_txn_id());
        assert!(first.0.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
    }
}
