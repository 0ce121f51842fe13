//! Fixed quota windows aligned to UTC: which window a Unix time falls in, and its bounds.
//!
//! Minutes, hours and days are plain divisions of Unix time (which has no leap seconds); months
//! use the proleptic Gregorian calendar (Howard Hinnant's `days_from_civil`). A window's `index`
//! counts windows since 1970 and becomes the tag of quota counters, so counters reset when the
//! index changes, without a timer.

use crate::config::limits::Window;

/// One window instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Windows since the Unix epoch.
    pub index: u64,
    /// Unix seconds of the window's first second.
    pub start: u64,
    /// Unix seconds just past the window.
    pub end: u64,
}

impl Span {
    /// Seconds in the window.
    pub fn secs(&self) -> u64 {
        self.end - self.start
    }
}

/// The window of kind `w` containing Unix second `t`.
pub fn locate(w: Window, t: u64) -> Span {
    let fixed = |len: u64| {
        let index = t / len;
        Span {
            index,
            start: index * len,
            end: index * len + len,
        }
    };
    match w {
        Window::Minute => fixed(60),
        Window::Hour => fixed(3600),
        Window::Day => fixed(86_400),
        Window::Month => {
            let (y, m, _) = civil_from_days((t / 86_400) as i64);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            Span {
                index: ((y - 1970) * 12 + (m as i64 - 1)) as u64,
                start: days_from_civil(y, m, 1) as u64 * 86_400,
                end: days_from_civil(ny, nm, 1) as u64 * 86_400,
            }
        }
    }
}

/// Days since 1970-01-01 of a Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The Gregorian date of a day count since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_windows_align_to_utc() {
        // 2026-11-23T10:17:42Z
        let t = 1_795_429_062;
        let m = locate(Window::Minute, t);
        assert_eq!((m.start % 60, m.secs(), t - m.start), (0, 60, 42));
        let h = locate(Window::Hour, t);
        assert_eq!((h.secs(), t - h.start), (3600, 17 * 60 + 42));
        let d = locate(Window::Day, t);
        assert_eq!((d.secs(), t - d.start), (86_400, 10 * 3600 + 17 * 60 + 42));
        assert_eq!(locate(Window::Day, d.end).index, d.index + 1);
        assert_eq!(locate(Window::Day, d.end - 1).index, d.index);
    }

    #[test]
    fn months_follow_the_calendar() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29), "leap day");
        for z in [0, 59, 365, 10_000, 20_000, 20_415] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        let feb_2028 = days_from_civil(2028, 2, 10) as u64 * 86_400 + 5;
        let s = locate(Window::Month, feb_2028);
        assert_eq!(s.secs(), 29 * 86_400, "leap February");
        assert_eq!(s.start, days_from_civil(2028, 2, 1) as u64 * 86_400);
        let next = locate(Window::Month, s.end);
        assert_eq!((next.index, next.secs()), (s.index + 1, 31 * 86_400));
        let dec = locate(Window::Month, days_from_civil(2026, 12, 31) as u64 * 86_400);
        assert_eq!(dec.end, days_from_civil(2027, 1, 1) as u64 * 86_400);
        assert_eq!(locate(Window::Month, 0).index, 0);
    }
}
