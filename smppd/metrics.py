"""Prometheus metrics of the daemon, recorded at the dispatcher and bind seams.

Labels stay bounded: operator, bind, command, command_status, state. Never an
MSISDN or a message id. A ``state`` label is always a message state (ACCEPTED,
SUBMITTED, DELIVERED, UNDELIVERABLE, EXPIRED, REJECTED, FAILED, UNKNOWN), as in the
API and the events; the SMSC's own receipt stat (DELIVRD, UNDELIV) stays in the events.
Also on the registry: ``smppd_build_info`` (the version) and the process and Python
metrics of prometheus_client (``process_*``, ``python_info``).
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

from smppd.version import version

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RECEIPT_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)




class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.build = Info("smppd_build", "The running smppd", registry=r)
        self.build.info({"version": version()})
        ProcessCollector(registry=r)  # CPU, memory, open files of this process (Linux)
        PlatformCollector(registry=r)  # python_info: the interpreter's version
        self.accepted = Counter("smppd_messages_accepted", "Messages accepted", ["operator"],
                                registry=r)
        self.submits = Counter("smppd_submits", "submit_sm sent", ["operator"], registry=r)
        self.responses = Counter("smppd_submit_responses", "submit_sm_resp by status",
                                 ["operator", "command_status"], registry=r)
        self.submit_latency = Histogram("smppd_submit_latency_seconds",
                                        "submit_sm to submit_sm_resp", ["operator"],
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.receipts = Counter("smppd_receipts", "Delivery receipts by the part state they set",
                                ["operator", "state"], registry=r)
        self.unmatched = Counter("smppd_receipts_unmatched", "Receipts with no submit (yet)",
                                 ["operator"], registry=r)
        self.receipt_delay = Histogram("smppd_receipt_delay_seconds",
                                       "submit_sm_resp to final receipt", ["operator"],
                                       buckets=RECEIPT_BUCKETS, registry=r)
        self.final_states = Counter("smppd_messages_final", "Messages reaching a final state",
                                    ["operator", "state"], registry=r)
        self.throttled = Counter("smppd_throttled", "ESME_RTHROTTLED / ESME_RMSGQFUL answers",
                                 ["operator"], registry=r)
        self.window_in_use = Gauge("smppd_window_in_use", "Outstanding requests",
                                   ["operator", "bind"], registry=r)
        self.bucket_rate = Gauge("smppd_bucket_rate_tps", "Current allowed rate", ["operator"],
                                 registry=r)
        self.tps_limit = Gauge("smppd_tps_limit", "Configured TPS", ["operator"], registry=r)
        self.bind_up = Gauge("smppd_bind_up", "1 when the bind is bound", ["operator", "bind"],
                             registry=r)
        self.bind_stalls = Counter("smppd_bind_stalls",
                                   "Sessions given up for an overdue submit_sm_resp",
                                   ["operator", "bind"], registry=r)
        self.bind_failing = Gauge("smppd_bind_failing",
                                  "1 while the bind fails for this reason (e.g. ESME_RINVPASWD)",
                                  ["operator", "bind", "reason"], registry=r)
        self.bind_attempts = Counter("smppd_bind_attempts", "Connect+bind attempts",
                                     ["operator", "bind"], registry=r)
        self.mo = Counter("smppd_mo_messages", "Mobile-originated messages", ["operator"],
                          registry=r)
        self.queued = Gauge("smppd_queued_parts", "Parts waiting for a window slot",
                            ["operator"], registry=r)
        # Webhooks (smppd.webhooks): outcome delivered | retried | dead; reason connect |
        # timeout | http_4xx | http_5xx | redirect | error | no_callback.
        self.webhook_deliveries = Counter("smppd_webhook_deliveries", "Webhook attempts by "
                                          "outcome", ["outcome"], registry=r)
        self.webhook_failures = Counter("smppd_webhook_failures", "Failed webhook attempts "
                                        "by reason", ["reason"], registry=r)
        self.webhook_latency = Histogram("smppd_webhook_latency_seconds", "Webhook POST to "
                                         "its answer", buckets=LATENCY_BUCKETS, registry=r)
        self.webhook_depth = Gauge("smppd_webhook_outbox_depth", "Webhook deliveries waiting "
                                   "(not dead)", registry=r)
        self.webhook_oldest = Gauge("smppd_webhook_outbox_oldest_seconds", "Age of the oldest "
                                    "waiting webhook delivery (0: none)", registry=r)
        self.webhook_dead = Gauge("smppd_webhook_dead_letters", "Webhook deliveries given up "
                                  "(replayable through the API)", registry=r)
