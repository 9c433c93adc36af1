//! Counters of the CA service: certificates issued, requests refused by reason, and request latency as
//! a histogram with Prometheus-style cumulative buckets. Plain atomics; [`CaMetrics`] is a snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why a `CreateCertificate` request got no certificate. The label is the metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalReason {
    /// No authenticator recognised the caller (`Unauthenticated`).
    Unauthenticated,
    /// An authenticator recognised the request and refused it (`Unauthenticated`).
    AuthenticationFailed,
    /// The CSR broke a rule (`InvalidArgument`).
    InvalidCsr,
    /// The CSR's trust domain is not the CA's (`InvalidArgument`).
    WrongTrustDomain,
    /// `ImpersonatedIdentity` was not allowed (`Unauthenticated`).
    ImpersonationDenied,
    /// The CSR asks for another identity than the caller's (`PermissionDenied`).
    IdentityMismatch,
    /// Signing failed inside the CA (`Internal`).
    SigningFailed,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 7] = [
        RefusalReason::Unauthenticated,
        RefusalReason::AuthenticationFailed,
        RefusalReason::InvalidCsr,
        RefusalReason::WrongTrustDomain,
        RefusalReason::ImpersonationDenied,
        RefusalReason::IdentityMismatch,
        RefusalReason::SigningFailed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::Unauthenticated => "unauthenticated",
            RefusalReason::AuthenticationFailed => "authentication_failed",
            RefusalReason::InvalidCsr => "invalid_csr",
            RefusalReason::WrongTrustDomain => "wrong_trust_domain",
            RefusalReason::ImpersonationDenied => "impersonation_denied",
            RefusalReason::IdentityMismatch => "identity_mismatch",
            RefusalReason::SigningFailed => "signing_failed",
        }
    }
}

/// Upper bounds of the latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A snapshot of the CA service counters.
#[derive(Debug, Clone, PartialEq)]
pub struct CaMetrics {
    /// Certificates issued.
    pub issued: u64,
    /// Requests refused, by [`RefusalReason::label`]; every reason is present, zero or not.
    pub refused: BTreeMap<String, u64>,
    /// Time spent in `CreateCertificate`, every request.
    pub latency: LatencySummary,
}

/// A latency histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub sum: Duration,
    pub max: Duration,
    /// `(upper bound in seconds, requests at or below it)`, cumulative, as Prometheus `le` buckets;
    /// requests above the last bound are only in `count`.
    pub buckets: Vec<(f64, u64)>,
}

impl LatencySummary {
    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            Duration::ZERO
        } else {
            self.sum / self.count.min(u64::from(u32::MAX)) as u32
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    issued: AtomicU64,
    refused: [AtomicU64; RefusalReason::ALL.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
    max_nanos: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
}

impl Metrics {
    pub fn issued(&self) {
        self.issued.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, reason: RefusalReason) {
        let i = RefusalReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.refused[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.max_nanos.fetch_max(nanos, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        // Non-cumulative here; made cumulative in the snapshot.
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> CaMetrics {
        let mut running = 0;
        let buckets = LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| {
                running += n.load(Ordering::Relaxed);
                (*bound, running)
            })
            .collect();
        CaMetrics {
            issued: self.issued.load(Ordering::Relaxed),
            refused: RefusalReason::ALL
                .iter()
                .zip(&self.refused)
                .map(|(r, n)| (r.label().to_string(), n.load(Ordering::Relaxed)))
                .collect(),
            latency: LatencySummary {
                count: self.count.load(Ordering::Relaxed),
                sum: Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)),
                max: Duration::from_nanos(self.max_nanos.load(Ordering::Relaxed)),
                buckets,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_counts_and_buckets() {
        let m = Metrics::default();
        m.issued();
        m.issued();
        m.refused(RefusalReason::InvalidCsr);
        m.observe(Duration::from_micros(50));
        m.observe(Duration::from_millis(3));
        m.observe(Duration::from_secs(2));
        let s = m.snapshot();
        assert_eq!(s.issued, 2);
        assert_eq!(s.refused["invalid_csr"], 1);
        assert_eq!(s.refused["unauthenticated"], 0);
        assert_eq!(s.refused.len(), RefusalReason::ALL.len());
        assert_eq!(s.latency.count, 3);
        assert_eq!(s.latency.max, Duration::from_secs(2));
        assert_eq!(s.latency.buckets[0], (0.0001, 1));
        assert_eq!(s.latency.buckets[5], (0.005, 2));
        assert_eq!(s.latency.buckets.last().unwrap().1, 2);
        assert!(s.latency.mean() > Duration::from_millis(600));
    }
}
