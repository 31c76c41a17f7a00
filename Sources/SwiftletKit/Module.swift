// Module SwiftletKit: the SDK a swiftlet author imports. It never depends on the host. So far it
// holds the sd_notify helpers (`Notify`); request and response types come with the HTTP issue.
