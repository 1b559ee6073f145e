#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import CCID
@testable import SimulatorCore
import ThreadSupport

/// The one scheduler every bus times its replies with: order, ABORT and
/// hang-up. No timings are asserted (shared machines); only what arrives, in
/// what order.
@Suite struct ReplySchedulerTests {
    final class Received: Sendable {
        let messages = Mutex<[[UInt8]]>([])
        let hangUps = Mutex(0)
        var sink: ReplyScheduler.Sink {
            ReplyScheduler.Sink(send: { m in self.messages.withLock { $0.append(m) } },
                                hangUp: { self.hangUps.withLock { $0 += 1 } })
        }
        /// Waits (at most 5 s) until `count` messages arrived; returns them.
        func await(_ count: Int) -> [[UInt8]] {
            let limit = Deadline.after(.seconds(5))
            while messages.withLock({ $0.count }) < count && !limit.hasPassed { usleep(1_000) }
            return messages.withLock { $0 }
        }
    }

    static func reply(_ tag: UInt8, after ms: Int64 = 0, survivesAbort: Bool = false, hangUp: Bool = false) -> TimedReply {
        var r = TimedReply(delay: .milliseconds(ms), reply: Reply(slot: 0, sequence: tag, status: SlotStatus(icc: .presentActive),
                                                                  body: .slotStatus(clockStatus: 0)))
        r.survivesAbort = survivesAbort
        r.hangUp = hangUp
        return r
    }

    static func tags(_ messages: [[UInt8]]) -> [UInt8] { messages.map { $0[6] } }

    @Test func delayedAndImmediateRepliesKeepTheirOrder() {
        let received = Received(), scheduler = ReplyScheduler(sink: received.sink)
        scheduler.deliver([Self.reply(1, after: 20), Self.reply(2)])
        // Immediate replies queue behind the delayed ones of an earlier command.
        scheduler.deliver([Self.reply(3)])
        scheduler.deliver([Self.reply(4, after: 5), Self.reply(5, after: 5)])
        #expect(Self.tags(received.await(5)) == [1, 2, 3, 4, 5])
        scheduler.deliver([Self.reply(6)])
        #expect(Self.tags(received.await(6)) == [1, 2, 3, 4, 5, 6])
    }

    @Test func abortDropsWhatWaitsExceptALateReadersReply() {
        let received = Received(), scheduler = ReplyScheduler(sink: received.sink)
        scheduler.deliver([Self.reply(1, after: 200), Self.reply(2, after: 200)])
        scheduler.deliver([Self.reply(3, after: 300, survivesAbort: true)])
        scheduler.abort()
        scheduler.deliver([Self.reply(4)])
        #expect(Self.tags(received.await(2)) == [3, 4])
        usleep(50_000)
        #expect(Self.tags(received.messages.withLock { $0 }) == [3, 4])
    }

    @Test func hangUpComesInItsTurn() {
        let received = Received(), scheduler = ReplyScheduler(sink: received.sink)
        scheduler.deliver([Self.reply(1, after: 5)])
        scheduler.deliver([Self.reply(2, hangUp: true)])
        scheduler.deliver([Self.reply(3)])
        #expect(Self.tags(received.await(2)) == [1, 3])
        #expect(received.hangUps.withLock { $0 } == 1)
    }

    @Test func nothingIsSentAfterDetach() {
        let received = Received(), scheduler = ReplyScheduler(sink: received.sink)
        scheduler.deliver([Self.reply(1)])
        scheduler.deliver([Self.reply(2, after: 100)])
        scheduler.detach()
        scheduler.deliver([Self.reply(3)])
        usleep(200_000)
        #expect(Self.tags(received.messages.withLock { $0 }) == [1])
        scheduler.attach(received.sink)
        scheduler.deliver([Self.reply(4)])
        #expect(Self.tags(received.await(2)) == [1, 4])
    }
}
