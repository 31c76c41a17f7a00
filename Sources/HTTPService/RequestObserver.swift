import Core
import Registry

/// Told of every request a `SiteRouter` answers; the host's metrics count them this way.
///
/// Contract: `requestAnswered` is called once per request, when the router has its response
/// head (a streamed body may still be on its way, so `duration` is the time to the head), on the
/// task that handled the request, which may be the loop's; it must be quick and must not block.
public protocol RequestObserver: Sendable {
    /// `route` is the entry id of the route the request matched, `not_found` when no route
    /// matched its path (answered by the service's `not_found` function or a plain 404), or
    /// `none` when it was answered without a route (405 for a path that matched under another
    /// method, or a service the current version no longer has).
    func requestAnswered(service: EntryID, route: String, method: String, status: Int, duration: Duration)
}
