import ArgumentParser
import SwiftletKit

/// `roost notify`: the sd_notify protocol from a shell script, like systemd-notify.
struct NotifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notify", abstract: "Tell the supervisor a service is ready (sd_notify), for shell-script services.",
        discussion: """
            Sends one message to $NOTIFY_SOCKET, which the host sets for services declared with \
            'readiness: notify'. Each ASSIGNMENT is a line such as READY=1, STATUS=text or \
            WATCHDOG=1. Exit 0 when sent, 1 when sending failed, 2 when NOTIFY_SOCKET is not set.
            """)

    @Flag(name: .long, help: "Send READY=1.")
    var ready = false

    @Option(name: .long, help: ArgumentHelp("Send STATUS=text.", valueName: "text"))
    var status: String?

    @Flag(name: .long, help: "Send WATCHDOG=1.")
    var watchdog = false

    @Argument(help: ArgumentHelp("More KEY=VALUE lines.", valueName: "assignment"))
    var assignments: [String] = []

    func validate() throws {
        if let bad = assignments.first(where: { !$0.contains("=") }) {
            throw ValidationError("'\(bad)' is not KEY=VALUE")
        }
        if !ready && status == nil && !watchdog && assignments.isEmpty {
            throw ValidationError("nothing to send: give --ready, --status, --watchdog or KEY=VALUE")
        }
    }

    func run() throws {
        guard ProcessEnvironment.value("NOTIFY_SOCKET") != nil else {
            printError("roost: NOTIFY_SOCKET is not set (is this a service with 'readiness: notify'?)")
            throw HostExit(code: 2)
        }
        var lines = assignments
        if ready { lines.append("READY=1") }
        if let status { lines.append("STATUS=" + status) }
        if watchdog { lines.append("WATCHDOG=1") }
        guard Notify.send(lines) else {
            printError("roost: could not send to NOTIFY_SOCKET")
            throw HostExit(code: 1)
        }
    }
}
