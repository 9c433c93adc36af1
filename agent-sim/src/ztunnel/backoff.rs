//! ztunnel's reconnect backoff: how a stream ended ([`Outcome`]) and how long to wait before the
//! next one ([`next_backoff`]).

use std::time::Duration;

use tonic::Code;

/// ztunnel's first reconnect delay and its cap.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// How a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Connecting, the TLS handshake or opening the stream failed.
    Connection(String),
    /// The stream ended with a gRPC status.
    Status { code: Code, message: String },
    /// The stream ended cleanly (OK or end of stream) after `responses` responses.
    Complete { responses: u64 },
    /// The client could not send its reply (the stream is gone).
    Local { error: String, responses: u64 },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Connection(e) => write!(f, "connection error: {e}"),
            Outcome::Status { code, message } => write!(f, "gRPC status {code:?}: {message}"),
            Outcome::Complete { .. } => f.write_str("stream complete"),
            Outcome::Local { error, .. } => write!(f, "{error}"),
        }
    }
}

/// ztunnel's reconnect rule (`run_loop`): returns (sleep now, backoff to carry).
///
/// - connection failures and most gRPC statuses: double the backoff (from 10 ms, capped at 15 s) and
///   sleep that long;
/// - `Unknown`, `Cancelled`, `DeadlineExceeded`, and `Unavailable` saying `transport is closing` or
///   `received prior goaway`: sleep 10 ms, reset;
/// - a clean end of stream: reconnect at once, reset.
///
/// One deviation keeps a simulator of thousands from spinning: a clean end (or a failed reply) on a
/// stream that delivered no response counts as a failure (doubling), not as an immediate reconnect.
pub fn next_backoff(backoff: Duration, outcome: &Outcome) -> (Duration, Duration) {
    let doubled = (backoff * 2).min(MAX_BACKOFF);
    match outcome {
        Outcome::Connection(_) => (doubled, doubled),
        Outcome::Status { code, message } => {
            let reconnect = matches!(
                code,
                Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
            ) || (*code == Code::Unavailable
                && (message.contains("transport is closing")
                    || message.contains("received prior goaway")));
            if reconnect {
                (INITIAL_BACKOFF, INITIAL_BACKOFF)
            } else {
                (doubled, doubled)
            }
        }
        Outcome::Complete { responses } | Outcome::Local { responses, .. } => {
            if *responses > 0 {
                (Duration::ZERO, INITIAL_BACKOFF)
            } else {
                (doubled, doubled)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_ztunnels_table() {
        let ms = Duration::from_millis;
        let status = |code: Code, message: &str| Outcome::Status {
            code,
            message: message.into(),
        };
        let cases: Vec<(Duration, Outcome, (Duration, Duration))> = vec![
            (
                ms(10),
                Outcome::Connection("refused".into()),
                (ms(20), ms(20)),
            ),
            (
                ms(10_000),
                Outcome::Connection("refused".into()),
                (MAX_BACKOFF, MAX_BACKOFF),
            ),
            (
                ms(640),
                status(Code::Unknown, "h2 protocol error"),
                (ms(10), ms(10)),
            ),
            (ms(640), status(Code::Cancelled, ""), (ms(10), ms(10))),
            (
                ms(640),
                status(Code::DeadlineExceeded, ""),
                (ms(10), ms(10)),
            ),
            (
                ms(640),
                status(Code::Unavailable, "transport is closing"),
                (ms(10), ms(10)),
            ),
            (
                ms(640),
                status(Code::Unavailable, "received prior goaway: code: NO_ERROR"),
                (ms(10), ms(10)),
            ),
            (
                ms(10),
                status(Code::Unavailable, "control plane shutting down"),
                (ms(20), ms(20)),
            ),
            (
                ms(40),
                status(Code::Unauthenticated, "no"),
                (ms(80), ms(80)),
            ),
            (
                ms(40),
                status(Code::PermissionDenied, "no"),
                (ms(80), ms(80)),
            ),
            (
                ms(640),
                Outcome::Complete { responses: 3 },
                (Duration::ZERO, ms(10)),
            ),
            // Never a hot loop: a stream that ended before any response backs off.
            (ms(10), Outcome::Complete { responses: 0 }, (ms(20), ms(20))),
            (
                ms(10),
                Outcome::Local {
                    error: "x".into(),
                    responses: 0,
                },
                (ms(20), ms(20)),
            ),
        ];
        for (backoff, outcome, want) in cases {
            assert_eq!(
                next_backoff(backoff, &outcome),
                want,
                "{outcome:?} after {backoff:?}"
            );
        }
    }
}
