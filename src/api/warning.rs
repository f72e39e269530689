//! Warnings that code deep in a request (admission plugins) adds to the
//! response, as upstream's request-scoped warning recorder does: the handler
//! collects them around the request and sends `Warning: 299 - "..."`
//! headers, which kubectl prints as `Warning: ...`.

use std::cell::RefCell;
use std::future::Future;

tokio::task_local! {
    static SINK: RefCell<Vec<String>>;
}

/// Run `f`, returning its output and the warnings added while it ran.
pub async fn collect<F: Future>(f: F) -> (F::Output, Vec<String>) {
    SINK.scope(RefCell::new(Vec::new()), async move {
        let out = f.await;
        let warnings = SINK.with(|s| s.take());
        (out, warnings)
    })
    .await
}

/// Add a warning to the current request's response; a no-op outside one
/// (in-process writers that no user reads).
pub fn add(message: impl Into<String>) {
    let message = message.into();
    let _ = SINK.try_with(|s| {
        let mut s = s.borrow_mut();
        if !s.contains(&message) {
            s.push(message);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn collects_within_the_scope_only() {
        add("dropped: no request");
        let (out, w) = collect(async {
            add("one");
            add("two");
            add("one");
            7
        })
        .await;
        assert_eq!(out, 7);
        assert_eq!(w, ["one", "two"]);
    }
}
