// Module SwiftletKit: the SDK a swiftlet author imports (request, response, sd_notify helpers).
// It never depends on the host. It holds no code yet.
