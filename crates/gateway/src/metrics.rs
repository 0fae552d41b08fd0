//! The gateway's Prometheus metrics: open sessions, bytes relayed each way, and ticket
//! rejections by reason.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::ticket::Rejection;

/// Labels naming the console kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `vnc` or `serial`.
    pub kind: &'static str,
}

/// Labels naming a direction.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `to_client` or `from_client`.
    pub direction: &'static str,
}

/// Labels naming a rejection reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// See [`Rejection::as_str`].
    pub reason: &'static str,
}

/// The gateway's metrics.
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    /// Sessions open now.
    pub sessions_open: Family<KindLabel, Gauge>,
    /// Sessions started.
    pub sessions_total: Family<KindLabel, Counter>,
    /// Bytes relayed.
    pub bytes: Family<DirectionLabel, Counter<u64, AtomicU64>>,
    /// Tickets refused.
    pub ticket_rejections: Family<ReasonLabel, Counter>,
}

impl GatewayMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        for reason in Rejection::ALL {
            drop(self.ticket_rejections.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            }));
        }
        registry.register(
            "porthole_console_sessions_open",
            "Console sessions open now",
            self.sessions_open.clone(),
        );
        registry.register(
            "porthole_console_sessions",
            "Console sessions started",
            self.sessions_total.clone(),
        );
        registry.register(
            "porthole_console_bytes",
            "Bytes relayed between consoles and clients",
            self.bytes.clone(),
        );
        registry.register(
            "porthole_console_ticket_rejections",
            "Console connection attempts refused, by reason",
            self.ticket_rejections.clone(),
        );
    }

    /// Counts a refused ticket.
    pub fn reject(&self, reason: Rejection) {
        self.ticket_rejections
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// The byte counters, resolved once per session.
    pub fn byte_counters(&self) -> ByteCounters {
        // Each lookup returns a read guard; a second lookup that must create its entry needs
        // the write lock, so each guard has to be gone before the next lookup.
        let to_client = self
            .bytes
            .get_or_create(&DirectionLabel {
                direction: "to_client",
            })
            .clone();
        let from_client = self
            .bytes
            .get_or_create(&DirectionLabel {
                direction: "from_client",
            })
            .clone();
        ByteCounters {
            to_client,
            from_client,
        }
    }
}

/// Live byte counters of the two directions.
#[derive(Clone, Debug, Default)]
pub struct ByteCounters {
    /// Console to client.
    pub to_client: Counter<u64, AtomicU64>,
    /// Client to console.
    pub from_client: Counter<u64, AtomicU64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counters_resolve_without_deadlock_and_count() {
        let metrics = GatewayMetrics::default();
        let counters = metrics.byte_counters();
        counters.to_client.inc_by(5);
        let again = metrics.byte_counters();
        assert_eq!(again.to_client.get(), 5);
        assert_eq!(again.from_client.get(), 0);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.reject(Rejection::Expired);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("porthole_console_ticket_rejections_total{reason=\"expired\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("porthole_console_bytes_total{direction=\"to_client\"} 5"),
            "{text}"
        );
    }
}
