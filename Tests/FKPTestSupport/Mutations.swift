import FKPTensor
import Foundation

/// Seeded byte mutations of a valid file (bit flips, odd bytes, insertions, deletions, truncation), for
/// property tests that readers return a value or an error and never trap.
public enum Mutations {
    public static func apply(to seed: [UInt8], count: Int, rngSeed: UInt64, _ read: (Data) -> Void) {
        var rng = Xoshiro(seed: rngSeed)
        for _ in 0..<count {
            var b = seed
            for _ in 0...Int(rng.next() % 4) {
                let i = Int(rng.next() % UInt64(max(b.count, 1)))
                switch rng.next() % 5 {
                case 0 where !b.isEmpty: b[i] ^= UInt8(1 << (rng.next() % 8))
                case 1 where !b.isEmpty: b[i] = [0, 0xFF, 0x7F, 0x80, UInt8(truncatingIfNeeded: rng.next())][Int(rng.next() % 5)]
                case 2: b.insert(contentsOf: (0..<Int(rng.next() % 8)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: i)
                case 3 where !b.isEmpty: b.removeSubrange(i..<min(b.count, i + 1 + Int(rng.next() % 16)))
                default: b = Array(b.prefix(Int(rng.next() % UInt64(b.count + 1))))
                }
            }
            read(Data(b))
        }
    }

    /// Mutations that keep a text format mostly readable, so parsing gets past its first check: a byte
    /// overwritten by a character of `alphabet` (numbers in a JSON header change), a bit flipped, `filler`
    /// inserted (numbers that overflow), a byte removed, or the rest cut off.
    public static func applyTextual(to seed: [UInt8], count: Int, rngSeed: UInt64, alphabet: String, filler: String,
                                    _ read: (Data) -> Void) {
        var rng = Xoshiro(seed: rngSeed)
        let characters = [UInt8](alphabet.utf8), inserted = [UInt8](filler.utf8)
        for _ in 0..<count {
            var b = seed
            for _ in 0...Int(rng.next() % 4) where !b.isEmpty {
                let i = Int(rng.next() % UInt64(b.count))
                switch rng.next() % 5 {
                case 0: b[i] = characters[Int(rng.next() % UInt64(characters.count))]
                case 1: b[i] ^= UInt8(1 << (rng.next() % 8))
                case 2: b.insert(contentsOf: inserted, at: i)
                case 3: b.remove(at: i)
                default: b = Array(b.prefix(i))
                }
            }
            read(Data(b))
        }
    }
}
