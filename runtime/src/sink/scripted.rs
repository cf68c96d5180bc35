//! A callback written as a function, for tests that run on tokio's paused
//! clock: without a socket, virtual time is the only time, so a test can
//! script an endpoint that answers after 5 ms or parks a key for 16 minutes
//! and assert exact waits in an instant.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::PreparedRequest;
use crate::guest::bindings::AttemptOutcome;

/// Answers one attempt: called when it is sent, finished when it is answered.
pub(crate) type Script =
    Arc<dyn Fn(&PreparedRequest) -> BoxFuture<'static, AttemptOutcome> + Send + Sync>;
