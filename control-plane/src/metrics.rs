//! ambientd's Prometheus metrics: one registry, every family prefixed `ambientd_`, and typed handles that
//! the xDS server, the source loop and the admin server call into.
//!
//! Families recorded as things happen (through the methods of [`Metrics`]):
//!
//! | family | labels | what |
//! |---|---|---|
//! | `ambientd_xds_connected_proxies` | `proxy` | open delta xDS streams, by proxy type (`ztunnel`, `waypoint`, …) |
//! | `ambientd_xds_pushes_total` | `type` | responses sent |
//! | `ambientd_xds_resources_sent_total` | `type` | resources in those responses |
//! | `ambientd_xds_acks_total`, `ambientd_xds_nacks_total` | `type` | client answers |
//! | `ambientd_xds_push_write_seconds` | `type` | index change → response written to the stream |
//! | `ambientd_xds_push_ack_seconds` | `type` | index change → ACK received |
//! | `ambientd_source_events_total` | `kind`, `event` | objects applied, deleted or reset by the source |
//! | `ambientd_source_errors_total` | `source` | documents or watch events the source could not read |
//! | `ambientd_build_info` | `version` | always 1 |
//!
//! Families read when scraped, so they are never stale: `ambientd_index_objects{kind}` and
//! `ambientd_index_resources{type}` from the index ([`Metrics::register_index`]), and
//! `ambientd_csr_requests_total{result}` and `ambientd_csr_duration_seconds` from the CA's own counters
//! ([`Metrics::register_ca`]). `type` is the resource type without `type.googleapis.com/`, e.g.
//! `istio.workload.Address`.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ambient_ca::CaMetrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::shared_index::SharedIndex;
use crate::source::Event;

/// The prefix of every family.
pub const PREFIX: &str = "ambientd";

/// The content type of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `type` label of a resource type: its type URL without `type.googleapis.com/`.
pub fn type_label(type_url: &str) -> &str {
    type_url.rsplit_once('/').map_or(type_url, |(_, name)| name)
}

/// Labels of the per-type xDS families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    pub r#type: String,
}

impl TypeLabels {
    fn of(type_url: &str) -> TypeLabels {
        TypeLabels {
            r#type: type_label(type_url).to_string(),
        }
    }
}

/// Labels of the connected-proxies gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProxyLabels {
    /// `ztunnel`, `waypoint`, or what the node id says.
    pub proxy: String,
}

/// Labels of the source event counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceEventLabels {
    /// The object kind, e.g. `Pod`.
    pub kind: String,
    /// `apply`, `delete` or `reset` (one per object of a reset).
    pub event: String,
}

/// Labels of the source error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceErrorLabels {
    /// `files` or `kube`.
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// Buckets of the push latency histograms, in seconds: 0.5 ms to about 33 s.
fn push_buckets() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of ambientd. Create one with [`Metrics::new`], share it as `Arc<Metrics>`; the families
/// are public so that callers with needs beyond the helper methods can use them directly.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub connected_proxies: Family<ProxyLabels, Gauge>,
    pub pushes: Family<TypeLabels, Counter>,
    pub resources_sent: Family<TypeLabels, Counter>,
    pub acks: Family<TypeLabels, Counter>,
    pub nacks: Family<TypeLabels, Counter>,
    pub push_write_seconds: HistogramFamily<TypeLabels>,
    pub push_ack_seconds: HistogramFamily<TypeLabels>,
    pub source_events: Family<SourceEventLabels, Counter>,
    pub source_errors: Family<SourceErrorLabels, Counter>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// The registry with every recorded family (all at zero) and the build info. The index and CA
    /// families appear once [`Metrics::register_index`] and [`Metrics::register_ca`] are called.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let connected_proxies = Family::<ProxyLabels, Gauge>::default();
        let pushes = Family::<TypeLabels, Counter>::default();
        let resources_sent = Family::<TypeLabels, Counter>::default();
        let acks = Family::<TypeLabels, Counter>::default();
        let nacks = Family::<TypeLabels, Counter>::default();
        let push_write_seconds: HistogramFamily<TypeLabels> =
            Family::new_with_constructor(push_buckets);
        let push_ack_seconds: HistogramFamily<TypeLabels> =
            Family::new_with_constructor(push_buckets);
        let source_events = Family::<SourceEventLabels, Counter>::default();
        let source_errors = Family::<SourceErrorLabels, Counter>::default();

        registry.register(
            "xds_connected_proxies",
            "Open delta xDS streams, by proxy type",
            connected_proxies.clone(),
        );
        registry.register(
            "xds_pushes",
            "Delta xDS responses sent, by resource type",
            pushes.clone(),
        );
        registry.register(
            "xds_resources_sent",
            "Resources sent in delta xDS responses, by resource type",
            resources_sent.clone(),
        );
        registry.register(
            "xds_acks",
            "Delta xDS responses ACKed, by resource type",
            acks.clone(),
        );
        registry.register(
            "xds_nacks",
            "Delta xDS responses NACKed (error_detail set), by resource type",
            nacks.clone(),
        );
        registry.register(
            "xds_push_write_seconds",
            "Time from an index change to the response carrying it written to the stream",
            push_write_seconds.clone(),
        );
        registry.register(
            "xds_push_ack_seconds",
            "Time from an index change to the ACK of the response carrying it",
            push_ack_seconds.clone(),
        );
        registry.register(
            "source_events",
            "Objects the source applied, deleted or reset, by kind",
            source_events.clone(),
        );
        registry.register(
            "source_errors",
            "Documents or watch events the source could not read",
            source_errors.clone(),
        );
        registry.register(
            "build",
            "ambientd build information",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            }),
        );

        Metrics {
            registry: Mutex::new(registry),
            connected_proxies,
            pushes,
            resources_sent,
            acks,
            nacks,
            push_write_seconds,
            push_ack_seconds,
            source_events,
            source_errors,
        }
    }

    /// Adds `ambientd_index_objects{kind}` and `ambientd_index_resources{type}`, read from `index` at
    /// every scrape (under its read lock, for a few map lengths).
    pub fn register_index(&self, index: Arc<SharedIndex>) {
        self.registry_mut()
            .register_collector(Box::new(IndexCollector { index }));
    }

    /// Adds `ambientd_csr_requests_total{result}` (`issued`, or the refusal reason) and
    /// `ambientd_csr_duration_seconds`, read from the CA's counters at every scrape, e.g.
    /// `metrics.register_ca(move || ca_service.metrics())`.
    pub fn register_ca(&self, snapshot: impl Fn() -> CaMetrics + Send + Sync + 'static) {
        self.registry_mut()
            .register_collector(Box::new(CaCollector {
                snapshot: Box::new(snapshot),
            }));
    }

    /// Every family in the OpenMetrics text format ([`CONTENT_TYPE`]), ending with `# EOF`.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }

    fn registry_mut(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a proxy as connected until the returned guard is dropped (keep it in the connection task).
    pub fn proxy_connected(&self, proxy: &str) -> ConnectedProxy {
        let gauge = self
            .connected_proxies
            .get_or_create(&ProxyLabels {
                proxy: proxy.to_string(),
            })
            .clone();
        gauge.inc();
        ConnectedProxy { gauge }
    }

    /// One response of `type_url` with `resources` resources was written; `since_change` is the time since
    /// the index change it carries (`None` for initial responses, which no change caused).
    pub fn pushed(&self, type_url: &str, resources: usize, since_change: Option<Duration>) {
        let labels = TypeLabels::of(type_url);
        self.pushes.get_or_create(&labels).inc();
        self.resources_sent
            .get_or_create(&labels)
            .inc_by(u64::try_from(resources).unwrap_or(u64::MAX));
        if let Some(d) = since_change {
            self.push_write_seconds
                .get_or_create(&labels)
                .observe(d.as_secs_f64());
        }
    }

    /// A response of `type_url` was ACKed; `since_change` as for [`Metrics::pushed`].
    pub fn acked(&self, type_url: &str, since_change: Option<Duration>) {
        let labels = TypeLabels::of(type_url);
        self.acks.get_or_create(&labels).inc();
        if let Some(d) = since_change {
            self.push_ack_seconds
                .get_or_create(&labels)
                .observe(d.as_secs_f64());
        }
    }

    /// A response of `type_url` was NACKed.
    pub fn nacked(&self, type_url: &str) {
        self.nacks.get_or_create(&TypeLabels::of(type_url)).inc();
    }

    /// Counts one batch of source events by kind: an apply or delete counts its object, a reset counts
    /// each of its objects as `event="reset"`.
    pub fn source_batch(&self, batch: &[Event]) {
        for event in batch {
            match event {
                Event::Apply(obj) => self.source_event(obj.kind().as_str(), "apply"),
                Event::Delete(obj) => self.source_event(obj.kind.as_str(), "delete"),
                Event::Reset(objs) => {
                    for obj in objs {
                        self.source_event(obj.kind().as_str(), "reset");
                    }
                }
            }
        }
    }

    fn source_event(&self, kind: &str, event: &str) {
        self.source_events
            .get_or_create(&SourceEventLabels {
                kind: kind.to_string(),
                event: event.to_string(),
            })
            .inc();
    }

    /// The counter of `source`'s unreadable documents or watch events, for a source that counts its own.
    pub fn source_error_counter(&self, source: &str) -> Counter {
        self.source_errors
            .get_or_create(&SourceErrorLabels {
                source: source.to_string(),
            })
            .clone()
    }

    /// `count` documents or watch events of `source` (`files`, `kube`) could not be read.
    pub fn source_errors(&self, source: &str, count: u64) {
        self.source_errors
            .get_or_create(&SourceErrorLabels {
                source: source.to_string(),
            })
            .inc_by(count);
    }
}

/// Keeps a proxy counted in `ambientd_xds_connected_proxies` while alive.
#[derive(Debug)]
pub struct ConnectedProxy {
    gauge: Gauge,
}

impl Drop for ConnectedProxy {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Index sizes, read at scrape time.
#[derive(Debug)]
struct IndexCollector {
    index: Arc<SharedIndex>,
}

impl Collector for IndexCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let (objects, addresses, authorizations) = {
            // A failed index is not described: the server is stopping.
            let Ok(index) = self.index.read() else {
                return Ok(());
            };
            (
                index.object_counts(),
                index.addresses().len(),
                index.authorizations().len(),
            )
        };
        let mut family = encoder.encode_descriptor(
            "index_objects",
            "Kubernetes objects held by the index, by kind",
            None,
            MetricType::Gauge,
        )?;
        for (kind, n) in objects {
            let labels = KindLabels {
                kind: kind.as_str().to_string(),
            };
            gauge(&mut family, &labels, n)?;
        }
        let mut family = encoder.encode_descriptor(
            "index_resources",
            "xDS resources computed by the index, by resource type",
            None,
            MetricType::Gauge,
        )?;
        for (type_name, n) in [
            ("istio.workload.Address", addresses),
            ("istio.security.Authorization", authorizations),
        ] {
            let labels = TypeLabels {
                r#type: type_name.to_string(),
            };
            gauge(&mut family, &labels, n)?;
        }
        Ok(())
    }
}

fn gauge(
    family: &mut MetricEncoder<'_>,
    labels: &impl EncodeLabelSet,
    n: usize,
) -> Result<(), fmt::Error> {
    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)).encode(family.encode_family(labels)?)
}

/// The CA's counters, read at scrape time.
struct CaCollector {
    snapshot: Box<dyn Fn() -> CaMetrics + Send + Sync>,
}

impl fmt::Debug for CaCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaCollector").finish_non_exhaustive()
    }
}

impl Collector for CaCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snapshot = (self.snapshot)();
        let mut family = encoder.encode_descriptor(
            "csr_requests",
            "CreateCertificate requests, by result (issued, or why it was refused)",
            None,
            MetricType::Counter,
        )?;
        let results = std::iter::once(("issued", snapshot.issued))
            .chain(snapshot.refused.iter().map(|(r, n)| (r.as_str(), *n)));
        for (result, n) in results {
            let labels = ResultLabels {
                result: result.to_string(),
            };
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "csr_duration_seconds",
            "Time spent in CreateCertificate, every request",
            None,
            MetricType::Histogram,
        )?;
        let latency = &snapshot.latency;
        family.encode_histogram::<NoLabelSet>(
            latency.sum.as_secs_f64(),
            latency.count,
            &per_bucket(&latency.buckets, latency.count),
            None,
        )
    }
}

/// Cumulative `(le, count)` buckets as the per-bucket counts the encoder sums, with `+Inf` (`f64::MAX`
/// for the encoder) holding what lies above the last bound.
fn per_bucket(cumulative: &[(f64, u64)], count: u64) -> Vec<(f64, u64)> {
    let mut previous = 0;
    let mut out: Vec<(f64, u64)> = cumulative
        .iter()
        .map(|(bound, n)| {
            let here = n.saturating_sub(previous);
            previous = (*n).max(previous);
            (*bound, here)
        })
        .collect();
    out.push((f64::MAX, count.saturating_sub(previous)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_labels_drop_the_prefix() {
        assert_eq!(
            type_label("type.googleapis.com/istio.workload.Address"),
            "istio.workload.Address"
        );
        assert_eq!(
            type_label("istio.workload.Address"),
            "istio.workload.Address"
        );
    }

    #[test]
    fn cumulative_buckets_become_per_bucket() {
        assert_eq!(
            per_bucket(&[(0.1, 1), (1.0, 3)], 5),
            vec![(0.1, 1), (1.0, 2), (f64::MAX, 2)]
        );
        assert_eq!(per_bucket(&[], 0), vec![(f64::MAX, 0)]);
    }

    #[test]
    fn recorded_families_appear_with_their_labels() {
        let m = Metrics::new();
        let guard = m.proxy_connected("ztunnel");
        m.pushed(
            "type.googleapis.com/istio.workload.Address",
            3,
            Some(Duration::from_millis(2)),
        );
        m.acked("type.googleapis.com/istio.workload.Address", None);
        m.nacked("type.googleapis.com/istio.security.Authorization");
        let text = m.encode().unwrap();
        for line in [
            "ambientd_xds_connected_proxies{proxy=\"ztunnel\"} 1",
            "ambientd_xds_pushes_total{type=\"istio.workload.Address\"} 1",
            "ambientd_xds_resources_sent_total{type=\"istio.workload.Address\"} 3",
            "ambientd_xds_acks_total{type=\"istio.workload.Address\"} 1",
            "ambientd_xds_nacks_total{type=\"istio.security.Authorization\"} 1",
            "ambientd_xds_push_write_seconds_count{type=\"istio.workload.Address\"} 1",
            "ambientd_xds_push_write_seconds_bucket{le=\"0.0025\",type=\"istio.workload.Address\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        let build = format!(
            "ambientd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.lines().any(|l| l == build), "{build} missing");
        drop(guard);
        let text = m.encode().unwrap();
        assert!(
            text.lines()
                .any(|l| l == "ambientd_xds_connected_proxies{proxy=\"ztunnel\"} 0")
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
