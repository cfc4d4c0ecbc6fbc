// Deterministic text formatting without Foundation: fixed decimals and UTC calendar times.

public enum Fmt {
    /// `x` with exactly `digits` decimals (rounded half away from zero), e.g. Zeek's `%.6f`.
    public static func fixed(_ x: Double, digits: Int = 6) -> String {
        if !x.isFinite { return "0." + String(repeating: "0", count: digits) }
        var scale: Double = 1
        for _ in 0..<digits { scale *= 10 }
        let neg = x < 0
        let scaled = (abs(x) * scale).rounded(.toNearestOrAwayFromZero)
        if scaled >= 9.0e18 { return String(x) }
        let n = UInt64(scaled)
        let p = UInt64(scale)
        let intPart = n / p
        var frac = String(n % p)
        if frac.count < digits { frac = String(repeating: "0", count: digits - frac.count) + frac }
        return (neg ? "-" : "") + String(intPart) + (digits > 0 ? "." + frac : "")
    }

    /// Civil date from days since 1970-01-01 (proleptic Gregorian; H. Hinnant's algorithm).
    static func civil(_ days: Int64) -> (y: Int64, m: Int64, d: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }

    /// Days since 1970-01-01 for a civil date.
    static func days(y y0: Int64, m: Int64, d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = m > 2 ? m - 3 : m + 9
        let doy = (153 * mp + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    private static func pad(_ v: Int64, _ w: Int) -> String {
        let s = String(v)
        return s.count >= w ? s : String(repeating: "0", count: w - s.count) + s
    }

    /// RFC 3339 UTC time with microseconds: 2009-11-18T16:43:56.223450Z.
    public static func iso8601(_ t: Double, fractionDigits: Int = 6) -> String {
        let us = Int64((t * 1_000_000).rounded(.down))
        var secs = us / 1_000_000
        var frac = us % 1_000_000
        if frac < 0 { frac += 1_000_000; secs -= 1 }
        var day = secs / 86400
        var rem = secs % 86400
        if rem < 0 { rem += 86400; day -= 1 }
        let (y, m, d) = civil(day)
        if y >= 0 && y <= 9999 && fractionDigits >= 0 && fractionDigits <= 6 {
            // One allocation: the digits go straight into the string's storage.
            let count = 20 + (fractionDigits > 0 ? 1 + fractionDigits : 0)
            return String(unsafeUninitializedCapacity: count) { b in
                func put(_ v: Int64, _ width: Int, at: Int) {
                    var v = v
                    for k in stride(from: at + width - 1, through: at, by: -1) { b[k] = UInt8(48 + v % 10); v /= 10 }
                }
                put(y, 4, at: 0); b[4] = 45; put(m, 2, at: 5); b[7] = 45; put(d, 2, at: 8); b[10] = 84
                put(rem / 3600, 2, at: 11); b[13] = 58; put(rem % 3600 / 60, 2, at: 14); b[16] = 58; put(rem % 60, 2, at: 17)
                var at = 19
                if fractionDigits > 0 {
                    b[19] = 46
                    var f = frac
                    for _ in fractionDigits..<6 { f /= 10 }
                    put(f, fractionDigits, at: 20)
                    at = 20 + fractionDigits
                }
                b[at] = 90
                return count
            }
        }
        var s = "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(rem / 3600, 2)):\(pad(rem % 3600 / 60, 2)):\(pad(rem % 60, 2))"
        if fractionDigits > 0 { s += "." + String(pad(frac, 6).prefix(fractionDigits)) }
        return s + "Z"
    }

    /// Zeek's #open/#close stamp: 2009-11-18-16-43-56 (UTC).
    public static func zeekStamp(_ t: Double) -> String {
        let secs = Int64(t.rounded(.down))
        let (y, m, d) = civil(secs >= 0 ? secs / 86400 : (secs - 86399) / 86400)
        var rem = secs % 86400
        if rem < 0 { rem += 86400 }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))-\(pad(rem / 3600, 2))-\(pad(rem % 3600 / 60, 2))-\(pad(rem % 60, 2))"
    }

    /// Parses a time given as epoch seconds ("1258562636.5") or RFC 3339 / ISO 8601 UTC
    /// ("2009-11-18T16:43:56Z", "2009-11-18 16:43:56", "2009-11-18"). Returns nil if malformed.
    public static func parseTime(_ s: String) -> Double? {
        if let v = Double(s), !s.contains("-") { return v }
        let u = Array(s.utf8)
        func num(_ a: Int, _ n: Int) -> Int64? {
            guard a + n <= u.count else { return nil }
            var v: Int64 = 0
            for i in a..<(a + n) {
                let c = u[i]
                guard c >= 48 && c <= 57 else { return nil }
                v = v * 10 + Int64(c - 48)
            }
            return v
        }
        guard u.count >= 10, let y = num(0, 4), u[4] == 45, let mo = num(5, 2), u[7] == 45, let d = num(8, 2),
              (1...12).contains(mo), (1...31).contains(d) else { return nil }
        var t = Double(days(y: y, m: mo, d: d) * 86400)
        if u.count == 10 { return t }
        guard u.count >= 19, u[10] == 84 || u[10] == 32, let h = num(11, 2), u[13] == 58, let mi = num(14, 2),
              u[16] == 58, let sec = num(17, 2), h < 24, mi < 60, sec < 61 else { return nil }
        t += Double(h * 3600 + mi * 60 + sec)
        var i = 19
        if i < u.count && u[i] == 46 {
            i += 1
            var scale = 0.1
            while i < u.count, u[i] >= 48, u[i] <= 57 {
                t += Double(u[i] - 48) * scale
                scale /= 10
                i += 1
            }
        }
        if i == u.count { return t }
        if u[i] == 90 && i == u.count - 1 { return t }
        // ±HH:MM offset
        guard u.count - i == 6, u[i] == 43 || u[i] == 45, let oh = num(i + 1, 2), u[i + 3] == 58,
              let om = num(i + 4, 2) else { return nil }
        let off = Double(oh * 3600 + om * 60)
        return u[i] == 43 ? t - off : t + off
    }
}
