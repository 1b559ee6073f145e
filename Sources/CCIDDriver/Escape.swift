import CCID

extension Reader {
    /// How long a reader may take over an Escape (a vendor command: firmware
    /// update steps, contactless polling, …), time extensions included.
    static let escapeWaitingTime: Duration = .seconds(30)

    /// PC_to_RDR_Escape (CCID 1.1 §6.1.8): a vendor command, its answer.
    /// Whether an application may send it is the IFD handler's decision.
    public func escape(slot: Int, command: [UInt8]) throws(DriverError) -> [UInt8] {
        try serialised(slot: slot) { s throws(DriverError) in
            let reply = try exchange(.escape(data: command), slot: s, waitingTime: Self.escapeWaitingTime)
            try check(reply)
            guard case .escape(let answer) = reply.body else {
                throw .protocolViolation("Escape answered with \(reply.messageType)")
            }
            return answer
        }
    }
}
