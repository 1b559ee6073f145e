#if canImport(Glibc)
import Glibc
#endif
import CLibUSB
import ThreadSupport

/// The process's libusb context: created on first use and kept, since pcscd
/// may open and close readers many times over its life.
enum LibUSB {
    private static let lock = Lock()
    nonisolated(unsafe) private static var context: OpaquePointer?

    static let initAttempts = 5

    static func shared() -> OpaquePointer? {
        lock.withLock {
            // libusb's udev backend enumerates every USB device at init, and fails
            // if one is half-added meanwhile (readers plugged together; seen under
            // umockdev with two tokens): a few tries, 50 ms apart, get past it.
            for attempt in 0..<initAttempts where context == nil {
                if attempt > 0 { Deadline.after(.milliseconds(50)).sleepUntil() }
                var c: OpaquePointer? = nil
                if libusb_init(&c) == 0 { context = c }
            }
            return context
        }
    }

    static func name(_ code: Int32) -> String { String(cString: libusb_error_name(code)) }
}

/// How one transfer ended.
enum TransferOutcome: Equatable {
    case completed(length: Int)
    /// The deadline passed; the transfer was cancelled and is over.
    case timedOut
    /// `cancel()` was called (before or during the transfer).
    case cancelled
    case stalled
    case noDevice
    case failed(String)
}

/// One libusb transfer object, run to completion by the calling thread: it
/// submits, handles libusb events until the transfer is done, cancels it at
/// the deadline or on `cancel()`, and never returns while libusb still owns
/// the buffer. One thread runs it at a time; any thread may cancel it.
/// Unchecked: it owns a libusb_transfer and its buffer, which libusb
/// completes on whichever thread handles events; `state` guards the rest.
final class Transfer: @unchecked Sendable {
    private let raw: UnsafeMutablePointer<libusb_transfer>
    private let done: UnsafeMutablePointer<Int32>
    private let state = Lock()
    private var inFlight = false
    private var cancelRequested = false
    /// libusb never gave it back; its memory must stay valid for good.
    private(set) var abandoned = false

    /// A cancelled transfer that libusb has not completed after this long is
    /// abandoned rather than freed under libusb's feet.
    static let cancelGrace: Duration = .seconds(2)

    init?() {
        guard let t = libusb_alloc_transfer(0) else { return nil }
        raw = t
        done = .allocate(capacity: 1)
        done.pointee = 1
    }

    deinit {
        if abandoned { return }
        libusb_free_transfer(raw)
        done.deallocate()
    }

    func run(context: OpaquePointer, handle: OpaquePointer, endpoint: UInt8, type: UInt8,
             buffer: UnsafeMutableRawBufferPointer, length: Int, deadline: Deadline) -> TransferOutcome {
        let startNow: Bool = state.withLock {
            if cancelRequested || abandoned { cancelRequested = false; return false }
            inFlight = true
            return true
        }
        guard startNow else { return .cancelled }
        guard let base = buffer.baseAddress, length <= buffer.count, let size = Int32(exactly: length) else {
            state.withLock { inFlight = false }
            return .failed("transfer buffer too small")
        }
        done.pointee = 0
        raw.pointee.dev_handle = handle
        raw.pointee.endpoint = endpoint
        raw.pointee.type = type
        raw.pointee.timeout = 0
        raw.pointee.flags = 0
        raw.pointee.buffer = base.assumingMemoryBound(to: UInt8.self)
        raw.pointee.length = size
        raw.pointee.user_data = UnsafeMutableRawPointer(done)
        raw.pointee.callback = { t in
            t?.pointee.user_data?.assumingMemoryBound(to: Int32.self).pointee = 1
        }
        let rc = libusb_submit_transfer(raw)
        if rc != 0 {
            done.pointee = 1
            state.withLock { inFlight = false; cancelRequested = false }
            return rc == LIBUSB_ERROR_NO_DEVICE.rawValue ? .noDevice : .failed("submit: \(LibUSB.name(rc))")
        }

        var cancelledAt: Deadline? = nil
        var byDeadline = false
        while done.pointee == 0 {
            if cancelledAt == nil {
                let requested = state.withLock { cancelRequested }
                if requested || deadline.hasPassed {
                    byDeadline = !requested
                    libusb_cancel_transfer(raw)
                    cancelledAt = .now()
                }
            } else if let at = cancelledAt, at.advanced(by: Self.cancelGrace).hasPassed {
                state.withLock { abandoned = true; inFlight = false }
                return .noDevice
            }
            // Cancellation reaches this loop through libusb's own wake-up; the
            // one-second slice only bounds how late a missed one is noticed.
            let limit = cancelledAt.map { $0.advanced(by: Self.cancelGrace) } ?? deadline
            let slice = min(max(limit.remaining, .milliseconds(1)), .seconds(1))
            var tv = timeval(tv_sec: Int(slice.components.seconds), tv_usec: Int(slice.components.attoseconds / 1_000_000_000_000))
            let r = libusb_handle_events_timeout_completed(context, &tv, done)
            if r == LIBUSB_ERROR_NO_DEVICE.rawValue, cancelledAt == nil {
                libusb_cancel_transfer(raw)
                cancelledAt = .now()
            }
        }
        let requested = state.withLock { () -> Bool in
            inFlight = false
            defer { cancelRequested = false }
            return cancelRequested
        }
        switch raw.pointee.status {
        case LIBUSB_TRANSFER_COMPLETED: return .completed(length: Int(max(0, raw.pointee.actual_length)))
        case LIBUSB_TRANSFER_CANCELLED, LIBUSB_TRANSFER_TIMED_OUT:
            return requested || !byDeadline ? .cancelled : .timedOut
        case LIBUSB_TRANSFER_STALL: return .stalled
        case LIBUSB_TRANSFER_NO_DEVICE: return .noDevice
        case LIBUSB_TRANSFER_OVERFLOW: return .failed("the device sent more than the buffer holds")
        default: return .failed("transfer error")
        }
    }

    /// Ends the transfer in progress, or the next one if none is.
    func cancel() {
        state.withLock {
            cancelRequested = true
            if inFlight { libusb_cancel_transfer(raw) }
        }
    }
}
