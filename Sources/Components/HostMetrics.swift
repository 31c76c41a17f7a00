import Core
import HTTPService
import Prometheus
import Registry
import Synchronization

extension ContextKey where Value == HostMetrics {
    /// Made by the host in boot phase 1, so every component can record into it.
    public static var metrics: Self { Self("host.metrics") }
}

/// The host's metrics, served as `GET /metrics` on the admin API in the Prometheus text format.
///
/// Each host owns one (its own `PrometheusCollectorRegistry`; nothing is bootstrapped globally),
/// so two hosts in one process, as in the tests, count apart. Recording may happen on any thread
/// and never waits for a scrape beyond the registry's short locks.
///
/// - `roost_http_requests_total{service, route, status}`: requests answered, by `http.service`
///   entry, route (the endpoint entry id, `not_found` or `none`, see `RequestObserver`) and status.
/// - `roost_http_request_duration_seconds{service, route}`: time to the response head.
/// - `roost_process_spawns_total{role}`: child processes started: `service`, `readiness`
///   (exec probes), `function`, `other` (tools the host runs).
/// - `roost_service_restarts_total{service}`: restarts by policy (out of backoff) or by command.
/// - `roost_eventbus_overflows_total` and `roost_eventbus_dropped_events_total`: subscriptions
///   that fell behind (each episode once) and the events they lost.
public final class HostMetrics: RequestObserver, ProcessSpawnObserver, Sendable {
    /// Where the metrics live; `render()` writes them out.
    public let registry = PrometheusCollectorRegistry()
    private let bus: EventBus?
    /// The bus totals already added to the counters (scrapes may overlap).
    private let busSeen = Mutex<(episodes: UInt64, dropped: UInt64)>((0, 0))
    private let overflows: Counter
    private let droppedEvents: Counter
    private let spawnsByRole: [String: Counter]
    /// The series of each request label set, so a request costs one lookup here rather than the
    /// registry's name checks.
    private let requestSeries = Mutex<[RequestKey: (count: Counter, latency: DurationHistogram)]>([:])

    private struct RequestKey: Hashable {
        let service: EntryID
        let route: String
        let status: Int
    }

    static var requests: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "roost", subsystem: "http", metricName: "requests", unitName: "total",
            helpText: "HTTP requests answered, by http.service entry, route (endpoint entry id, not_found or none) and status.")
    }
    static var duration: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "roost", subsystem: "http", metricName: "request_duration", unitName: "seconds",
            helpText: "Time from a request to its response head, by http.service entry and route.")
    }
    static var spawns: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "roost", subsystem: "process", metricName: "spawns", unitName: "total",
            helpText: "Child processes started, by role (service, readiness, function, other).")
    }
    static var restarts: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "roost", subsystem: "service", metricName: "restarts", unitName: "total",
            helpText: "Service restarts, by restart policy or by command, by service entry.")
    }
    static var busOverflows: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "roost", subsystem: "eventbus", metricName: "overflows", unitName: "total",
            helpText: "Times an event bus subscriber fell behind and began to lose events (each episode once).")
    }
    static var busDropped: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "roost", subsystem: "eventbus", metricName: "dropped_events", unitName: "total",
            helpText: "Events an event bus subscriber lost because it fell behind.")
    }

    /// From half a millisecond (a static file) to the default function timeout.
    static let latencyBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30),
    ]

    static let roles = ["service", "readiness", "function", "other"]

    /// `bus`: whose overflow totals the scrape reports (none: they stay 0).
    public init(bus: EventBus?) {
        self.bus = bus
        overflows = registry.makeCounter(descriptor: Self.busOverflows)
        droppedEvents = registry.makeCounter(descriptor: Self.busDropped)
        // Every role is there from the start, at 0, so a rate over the first spawn is right.
        var byRole: [String: Counter] = [:]
        for role in Self.roles { byRole[role] = registry.makeCounter(descriptor: Self.spawns, labels: [("role", role)]) }
        spawnsByRole = byRole
    }

    // MARK: - Recording

    public func requestAnswered(service: EntryID, route: String, method: String, status: Int, duration: Duration) {
        let key = RequestKey(service: service, route: route, status: status)
        let series = requestSeries.withLock { series in
            if let known = series[key] { return known }
            let labels = [("service", service.description), ("route", route)]
            let made = (registry.makeCounter(descriptor: Self.requests, labels: labels + [("status", String(status))]),
                        registry.makeDurationHistogram(descriptor: Self.duration, labels: labels, buckets: Self.latencyBuckets))
            series[key] = made
            return made
        }
        series.count.increment()
        series.latency.record(duration)
    }

    public func processSpawned(_ options: ProcessOptions) {
        spawnsByRole[Self.role(of: options)]?.increment()
    }

    /// The role a spawn is counted under (the spawner names it; `other` when it did not).
    static func role(of options: ProcessOptions) -> String {
        if let role = options.role, roles.contains(role.rawValue) { return role.rawValue }
        return "other"
    }

    public func serviceRestarted(_ service: EntryID) {
        registry.makeCounter(descriptor: Self.restarts, labels: [("service", service.description)]).increment()
    }

    // MARK: - Output

    /// The metrics in the Prometheus text exposition format (version 0.0.4).
    public func render() -> [UInt8] {
        if let bus {
            let totals = bus.overflowTotals()
            let delta = busSeen.withLock { seen -> (UInt64, UInt64) in
                let delta = (totals.episodes &- seen.episodes, totals.dropped &- seen.dropped)
                // Another scrape may have read newer totals first: never step back.
                if totals.episodes >= seen.episodes, totals.dropped >= seen.dropped {
                    seen = (totals.episodes, totals.dropped)
                    return delta
                }
                return (0, 0)
            }
            if delta.0 > 0 { overflows.increment(by: Int64(delta.0)) }
            if delta.1 > 0 { droppedEvents.increment(by: Int64(delta.1)) }
        }
        return registry.emitToBuffer()
    }

    /// The content type of `render()`'s output.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}
