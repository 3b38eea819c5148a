"""The service's own health metrics, on the application's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from monitor import __version__

COLLECTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)


class ServiceMetrics:
    """Counters and gauges updated as the service works; read at scrape time."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.build = Info("egov_build", "Version of egov-kpi-monitor", registry=r)
        self.build.info({"version": __version__})
        self.source_up = Gauge(
            "egov_source_up", "1 if the last collection of the source succeeded, else 0",
            ["source", "kind"], registry=r)
        self.source_last_success = Gauge(
            "egov_source_last_success_timestamp_seconds",
            "Unix time of the source's last successful collection", ["source"], registry=r)
        self.source_watermark = Gauge(
            "egov_source_watermark_timestamp_seconds",
            "Start of the first period the next collection of the source will read (Unix time)",
            ["source"], registry=r)
        self.collection_duration = Histogram(
            "egov_collection_duration_seconds", "Duration of one collection of one source",
            ["source"], buckets=COLLECTION_BUCKETS, registry=r)
        self.collection_errors = Counter(
            "egov_collection_errors_total", "Failed collections by source and reason",
            ["source", "reason"], registry=r)
        self.collection_retries = Counter(
            "egov_collection_retries_total", "HTTP requests to a source retried, by reason",
            ["source", "reason"], registry=r)
        self.observations_stored = Counter(
            "egov_observations_stored_total", "Observations stored (inserted or updated)",
            ["source"], registry=r)
        self.observations_rejected = Counter(
            "egov_observations_rejected_total", "Records or observations rejected, by reason",
            ["source", "reason"], registry=r)
        self.kpi_computation_duration = Gauge(
            "egov_kpi_computation_duration_seconds", "Duration of the last KPI computation",
            registry=r)
        self.evaluation_duration = Gauge(
            "egov_evaluation_duration_seconds", "Duration of the last evaluation of the target rules",
            registry=r)
        self.rules_loaded = Gauge("egov_rules_loaded", "Target rules in force", registry=r)
        self.rules_reload_success = Gauge(
            "egov_rules_last_reload_success",
            "1 if the last (re)load of the rule files succeeded; 0 if it was refused and the previous rules kept",
            registry=r)
        self.rules_reloaded_at = Gauge(
            "egov_rules_last_reload_success_timestamp_seconds", "Unix time of the last successful rules reload",
            registry=r)
        self.config_reload_success = Gauge(
            "egov_config_last_reload_success",
            "1 if the last (re)load of the configuration succeeded; 0 if it was refused and the previous one kept",
            registry=r)
        self.config_reloaded_at = Gauge(
            "egov_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration reload", registry=r)
        self.leader = Gauge(
            "egov_leader", "1 if this instance is the leader (collects, alerts, sends mail), 0 if a follower "
            "(high availability: serves reads and /metrics, takes over when the leader dies)", registry=r)
        self.kpi_computed_at = Gauge(
            "egov_kpi_computed_timestamp_seconds", "Unix time of the last KPI computation",
            registry=r)
        # Alerts and mail. Gauges over stored state are set by the alert engine after
        # each cycle (from the database, so a restart shows the truth at once).
        self.alerts = Gauge(
            "egov_alerts", "Alerts by kind (target, source) and state (pending, firing)",
            ["kind", "state"], registry=r)
        self.alerts_inhibited = Gauge(
            "egov_alerts_inhibited", "Target alerts held back because a source they depend on is down or stale",
            registry=r)
        self.silences_active = Gauge("egov_silences_active", "Silences in force now", registry=r)
        self.notifications = Counter(
            "egov_notifications_total",
            "Alert notices put into digests, by kind (firing, reminder, escalated, resolved, flapping)",
            ["kind"], registry=r)
        self.alerts_held = Gauge(
            "egov_alerts_held", "Alert notices due but held back at the last composition, by reason "
            "(inhibited by a broken source, silenced, unroutable: nobody to tell)", ["reason"], registry=r)
        self.outbox_messages = Gauge(
            "egov_outbox_messages", "Messages in the outbox by status (pending, sending, sent, failed)",
            ["status"], registry=r)
        self.outbox_oldest_age = Gauge(
            "egov_outbox_oldest_pending_age_seconds",
            "Age of the oldest message not yet accepted by the SMTP server (0 when none)", registry=r)
        self.email_deliveries = Counter(
            "egov_email_deliveries_total",
            "Attempts to hand a message to the SMTP server, by outcome (sent, transient, permanent, in_doubt, "
            "expired)", ["outcome"], registry=r)
        self.email_delivery_duration = Histogram(
            "egov_email_delivery_duration_seconds", "Time to hand one message to the SMTP server",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.alertmanager_forwarded = Counter(
            "egov_alertmanager_forwards_total", "Batches of alerts posted to Alertmanager, by outcome (ok, error)",
            ["outcome"], registry=r)
