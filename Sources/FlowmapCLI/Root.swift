import ArgumentParser

/// The `flowmap` command: what talks to what, from captures and hosts.
public struct Flowmap: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "flowmap",
        abstract: "Shows what talks to what, and turns it into least-privilege network policy.",
        version: "0.1.0",
        subcommands: [FlowsCommand.self, IngestCommand.self, GraphCommand.self, SuggestCommand.self, SimulateCommand.self, LintCommand.self, DiffCommand.self, DiscoverCommand.self]
    )
    public init() {}
}

/// A user-facing failure: one line on stderr, exit status 2.
struct UserError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Prints "flowmap: MESSAGE" on stderr and exits 2.
func fail(_ message: String) -> ExitCode {
    Terminal.stderr("flowmap: \(message)\n")
    return ExitCode(2)
}
