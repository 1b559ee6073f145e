import ThreadSupport
import Foundation
import Testing
@testable import CCIDDriver

/// Resets (power-on, then T=1 selected again) and APDUs of one slot from
/// several threads at once, with nothing above the driver serialising them
/// (pcscd would). A reset must not land inside an APDU's exchanges, and the
/// T=1 state an APDU leaves must not outlive a reset: every APDU that neither
/// overlaps a reset nor follows one that is still selecting its protocol gets
/// its exact answer. Under `make sanitize` ThreadSanitizer watches every access.
struct SlotSerialisationTests {
    // Extended case 2 for 300 bytes: two T=1 blocks (or response pieces) per APDU.
    static let apdu: [UInt8] = [0x80, 0x00, 0x04, 0xA5, 0x00, 0x01, 0x2C]
    static let response: [UInt8] = [UInt8](repeating: 0xA5, count: 300) + [0x90, 0x00]
    static let resets = 12

    @Test(arguments: ["gemalto-ct30-tpdu", "o2micro-oz776-char", "omnikey-3121-extended"])
    func resetsAndAPDUsOfOneSlotDoNotInterleave(profile: String) throws {
        // A short cap: an APDU caught between a power-on and its protocol may go unanswered.
        let h = try Harness(profile: profile, timeouts: ExchangeTimeouts(maximum: .milliseconds(400), transportMargin: .milliseconds(100)))
        let atr = try h.connect(protocolType: 1)
        let reader = h.reader
        // Odd while a reset is between its power-on and its protocol selection.
        let epoch = Mutex(0)
        let problems = Mutex<[String]>([])
        let clean = Mutex(0)
        let resetting = Mutex(true)
        DispatchQueue.concurrentPerform(iterations: 3) { worker in
            if worker == 0 {
                for _ in 0..<Self.resets {
                    Self.reset(reader, atr: atr, epoch: epoch, problems: problems)
                    // Two clean APDUs between resets: the next reset then meets the third in flight.
                    let target = clean.withLock { $0 } + 2
                    let limit = ContinuousClock.now + .seconds(5)
                    while clean.withLock({ $0 }) < target && ContinuousClock.now < limit { usleep(200) }
                }
                resetting.withLock { $0 = false }
                return
            }
            while resetting.withLock({ $0 }) {
                let before = epoch.withLock { $0 }
                let answer: Result<[UInt8], DriverError>
                do throws(DriverError) { answer = .success(try reader.transmit(slot: 0, apdu: Self.apdu)) } catch {
                    answer = .failure(error)
                }
                // A reset in between may cost an APDU (a transmit between a power-on and
                // its protocol selection runs under the ATR's default protocol).
                guard before % 2 == 0, epoch.withLock({ $0 }) == before else {
                    // Let the reset finish: under the ATR's default protocol an APDU comes
                    // back at once, and two spinning workers could keep it from its PPS.
                    usleep(2_000)
                    continue
                }
                if answer == .success(Self.response) {
                    clean.withLock { $0 += 1 }
                } else {
                    problems.withLock { $0.append("worker \(worker), no reset near: \(answer)") }
                }
            }
        }
        #expect(problems.withLock { $0 } == [])
        #expect(clean.withLock { $0 } >= 2 * Self.resets)
        // Afterwards the slot is as a reset left it.
        #expect(try reader.transmit(slot: 0, apdu: Self.apdu) == Self.response)
    }

    /// Power-on and T=1 again, as pcscd does for SCARD_RESET_CARD. A PPS is
    /// only possible right after the ATR: if an APDU got in first, the card
    /// refuses it, and the reset is done again.
    static func reset(_ reader: Reader, atr: [UInt8], epoch: borrowing Mutex<Int>, problems: borrowing Mutex<[String]>) {
        epoch.withLock { $0 += 1 }
        defer { epoch.withLock { $0 += 1 } }
        for _ in 0..<20 {
            do throws(DriverError) {
                let again = try reader.powerOn(slot: 0)
                if again != atr { problems.withLock { $0.append("a reset gave ATR \(again)") } }
                if try reader.selectProtocol(slot: 0, requested: .t1) == 1 { return }
            } catch {
                guard case .protocolNotSupported = error else {
                    problems.withLock { $0.append("reset: \(error)") }
                    return
                }
            }
        }
        problems.withLock { $0.append("T=1 never selected after a reset") }
    }
}
