#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A value reachable only while its lock is held: `withLock` hands it out as
/// `inout` for one critical section, with typed throws.
///
/// The same shape as Swift's `Synchronization.Mutex`, but over a pthread
/// mutex. On Linux the standard library's Mutex locks with atomics and futex
/// calls inside the uninstrumented Synchronization library, so ThreadSanitizer
/// (`make sanitize`) sees no ordering between two critical sections and
/// reports races that are not there (it did, in InProcessTransport). pthread
/// mutexes it understands. The one unchecked part of the tree's locked state
/// is here; every user is checked by the compiler.
/// For a lock that guards nothing use `Lock`: a zero-sized Value shares its
/// address with the next field, and ThreadSanitizer then reports the lock's
/// own pointer as raced.
public final class Mutex<Value> {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    public init(_ initialValue: Value) {
        value = initialValue
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func withLock<Result, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }

    /// Runs `body` only if the lock is free right now.
    public func withLockIfAvailable<Result, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result? {
        guard pthread_mutex_trylock(mutex) == 0 else { return nil }
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}

extension Mutex: @unchecked Sendable where Value: Sendable {}
