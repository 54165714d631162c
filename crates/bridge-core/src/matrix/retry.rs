//! When to retry a call to the homeserver, as a pure function of what happened.
//!
//! The sender in [`super::client`] asks [`decide`] after every failed attempt; keeping the
//! decision free of I/O and randomness (the jittered backoff delay is passed in) makes every
//! rule testable in a table.

use std::time::Duration;

use http::{HeaderMap, StatusCode};

use super::error::ErrorBody;

/// Limits on retrying one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How many attempts in all, the first included.
    pub max_attempts: u32,
    /// No retry is started if it would begin later than this after the first attempt.
    pub max_total: Duration,
    /// The longest wait honoured from a 429's `retry_after_ms` or `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            max_total: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// What one attempt ended with, as far as retrying is concerned.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome<'a> {
    /// The homeserver answered with an error status.
    Status {
        /// The status of the answer.
        status: StatusCode,
        /// The seconds of a `Retry-After` header, if any.
        retry_after: Option<Duration>,
        /// The answer's body.
        body: &'a [u8],
    },
    /// No connection could be made: the request certainly did not reach the homeserver.
    Connect,
    /// The request may have reached the homeserver but no (complete) answer came back.
    Lost,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Wait this long, then try again.
    Retry(Duration),
    /// Give up and return the error.
    Fail,
}

/// Decides whether to retry after attempt number `attempt` (1 for the first) failed.
///
/// `idempotent` says whether sending the request twice is harmless (GET, PUT with a
/// transaction ID, DELETE); `elapsed` is the time since the first attempt started and
/// `backoff` the next jittered delay of the caller's [`crate::backoff::Backoff`].
pub(crate) fn decide(
    policy: &RetryPolicy,
    outcome: Outcome<'_>,
    idempotent: bool,
    attempt: u32,
    elapsed: Duration,
    backoff: Duration,
) -> Decision {
    if attempt >= policy.max_attempts {
        return Decision::Fail;
    }
    let delay = match outcome {
        Outcome::Status {
            status,
            retry_after,
            body,
        } if status == StatusCode::TOO_MANY_REQUESTS => {
            let from_body = ErrorBody::parse(body)
                .retry_after_ms
                .map(Duration::from_millis);
            from_body
                .or(retry_after)
                .unwrap_or(backoff)
                .min(policy.max_retry_after)
        }
        Outcome::Status { status, .. }
            if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED =>
        {
            backoff
        }
        Outcome::Status { .. } => return Decision::Fail,
        Outcome::Connect => backoff,
        Outcome::Lost if idempotent => backoff,
        Outcome::Lost => return Decision::Fail,
    };
    if elapsed + delay > policy.max_total {
        return Decision::Fail;
    }
    Decision::Retry(delay)
}

/// The delay of a `Retry-After: <seconds>` header; HTTP dates are ignored.
pub(crate) fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn decisions_follow_the_rules() {
        let policy = RetryPolicy::default();
        let limited = br#"{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":1200}"#.as_slice();
        let huge = br#"{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":900000}"#.as_slice();
        let status =
            |code: u16, retry_after: Option<Duration>, body: &'static [u8]| Outcome::Status {
                status: StatusCode::from_u16(code).expect("valid"),
                retry_after,
                body,
            };
        // (outcome, idempotent, attempt, elapsed ms, expected)
        let cases: Vec<(Outcome<'_>, bool, u32, u64, Decision)> = vec![
            (
                status(429, None, limited),
                false,
                1,
                0,
                Decision::Retry(MS(1200)),
            ),
            (
                status(429, Some(MS(5000)), limited),
                false,
                1,
                0,
                Decision::Retry(MS(1200)),
            ),
            (
                status(429, Some(MS(5000)), b""),
                false,
                1,
                0,
                Decision::Retry(MS(5000)),
            ),
            (
                status(429, None, b""),
                false,
                1,
                0,
                Decision::Retry(MS(300)),
            ),
            (
                status(429, None, huge),
                true,
                1,
                0,
                Decision::Retry(Duration::from_secs(30)),
            ),
            (
                status(500, None, b""),
                false,
                2,
                0,
                Decision::Retry(MS(300)),
            ),
            (
                status(502, None, b"<html>"),
                true,
                1,
                0,
                Decision::Retry(MS(300)),
            ),
            (status(501, None, b""), true, 1, 0, Decision::Fail),
            (status(400, None, b""), true, 1, 0, Decision::Fail),
            (
                status(403, None, br#"{"errcode":"M_FORBIDDEN"}"#),
                true,
                1,
                0,
                Decision::Fail,
            ),
            (status(404, None, b""), true, 1, 0, Decision::Fail),
            (Outcome::Connect, false, 1, 0, Decision::Retry(MS(300))),
            (Outcome::Lost, true, 1, 0, Decision::Retry(MS(300))),
            (Outcome::Lost, false, 1, 0, Decision::Fail),
            // Out of attempts.
            (status(500, None, b""), true, 5, 0, Decision::Fail),
            (Outcome::Connect, true, 5, 0, Decision::Fail),
            // Out of time.
            (status(429, None, limited), true, 1, 59_000, Decision::Fail),
            (Outcome::Connect, true, 2, 59_800, Decision::Fail),
        ];
        for (i, (outcome, idempotent, attempt, elapsed, expected)) in cases.into_iter().enumerate()
        {
            let got = decide(&policy, outcome, idempotent, attempt, MS(elapsed), MS(300));
            assert_eq!(got, expected, "case {i}: {outcome:?}");
        }
    }

    #[test]
    fn retry_after_header_takes_seconds_only() {
        let cases = [
            ("3", Some(Duration::from_secs(3))),
            (" 10 ", Some(Duration::from_secs(10))),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
            ("-1", None),
        ];
        for (value, expected) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::RETRY_AFTER,
                value.parse().expect("header value"),
            );
            assert_eq!(retry_after_header(&headers), expected, "{value}");
        }
        assert_eq!(retry_after_header(&HeaderMap::new()), None);
    }
}
