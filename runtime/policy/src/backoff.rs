//! Retry back-off schedules such as `retry.backoff.sec = 5,30,60,300,600`.
//!
//! A schedule with N entries allows N retries, so a record gets 1 + N
//! attempts: entry k is the wait after failed attempt k. Unlike the
//! reference, which parses each entry only when it is first needed (and
//! fails the task on a bad one), the whole list is validated up front.

use std::fmt;

/// Milliseconds in one second.
const MS_PER_SECOND: u64 = 1_000;

/// The longest wait accepted: one year (365 days), in seconds.
pub const MAX_WAIT_SECONDS: u64 = 365 * 24 * 60 * 60;

/// The reference's default for `retry.backoff.sec`, in seconds.
const DEFAULT_SECONDS: [u64; 5] = [5, 30, 60, 300, 600];

/// A list of waits between attempts, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackoffSchedule {
    waits_ms: Vec<u64>,
}

impl BackoffSchedule {
    /// Parses a comma-separated list of seconds, e.g. `"5,30,60,300,600"`.
    ///
    /// The whole text and each element are trimmed. An empty or blank text
    /// is the empty schedule (no retries). Each element is a plain decimal
    /// number of seconds: digits with an optional `.` and more digits
    /// (`0.2` is 200 ms, rounded to the nearest millisecond; `0` retries at
    /// once); no sign, exponent, `NaN` or `inf`, and at most one year.
    ///
    /// # Errors
    ///
    /// The first invalid element, with its 1-based position.
    pub fn parse(text: &str) -> Result<Self, BackoffError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self::from_waits_ms(Vec::new()));
        }
        let waits_ms = text
            .split(',')
            .enumerate()
            .map(|(index, element)| parse_element(index + 1, element.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_waits_ms(waits_ms))
    }

    /// A schedule with the given waits in milliseconds.
    #[must_use]
    pub fn from_waits_ms(waits_ms: Vec<u64>) -> Self {
        BackoffSchedule { waits_ms }
    }

    /// The waits in milliseconds, in order.
    #[must_use]
    pub fn waits_ms(&self) -> &[u64] {
        &self.waits_ms
    }

    /// The number of retries the schedule allows.
    #[must_use]
    pub fn len(&self) -> usize {
        self.waits_ms.len()
    }

    /// Whether the schedule allows no retry at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.waits_ms.is_empty()
    }

    /// Wait before retry number `retry` (1-based: the wait after the first
    /// failed attempt is retry 1). `None` when the schedule is exhausted,
    /// and for retry 0, which does not exist.
    #[must_use]
    pub fn wait_before_retry(&self, retry: u32) -> Option<u64> {
        let index = usize::try_from(retry.checked_sub(1)?).ok()?;
        self.waits_ms.get(index).copied()
    }
}

impl Default for BackoffSchedule {
    /// `5,30,60,300,600` seconds, the reference's default.
    fn default() -> Self {
        Self::from_waits_ms(
            DEFAULT_SECONDS
                .iter()
                .map(|seconds| seconds * MS_PER_SECOND)
                .collect(),
        )
    }
}

impl fmt::Display for BackoffSchedule {
    /// The schedule as a list of seconds that [`BackoffSchedule::parse`]
    /// reads back to the same schedule, e.g. `5,30,0.2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, wait) in self.waits_ms.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write_seconds(f, *wait)?;
        }
        Ok(())
    }
}

/// Writes milliseconds as seconds with no trailing zeros: 200 is `0.2`.
fn write_seconds(f: &mut fmt::Formatter<'_>, ms: u64) -> fmt::Result {
    let whole = ms / MS_PER_SECOND;
    let fraction = ms % MS_PER_SECOND;
    if fraction == 0 {
        return write!(f, "{whole}");
    }
    let digits = format!("{fraction:03}");
    write!(f, "{whole}.{}", digits.trim_end_matches('0'))
}

/// Why a back-off list was rejected. Positions are 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackoffError {
    /// An element is empty, e.g. the middle of `5,,30` or the end of `5,`.
    EmptyElement {
        /// 1-based position of the element in the list.
        position: usize,
    },
    /// An element is not a plain decimal number of seconds.
    NotANumber {
        /// 1-based position of the element in the list.
        position: usize,
        /// The element as written (trimmed).
        element: String,
    },
    /// An element is a negative number.
    Negative {
        /// 1-based position of the element in the list.
        position: usize,
        /// The element as written (trimmed).
        element: String,
    },
    /// An element is longer than [`MAX_WAIT_SECONDS`].
    TooLarge {
        /// 1-based position of the element in the list.
        position: usize,
        /// The element as written (trimmed).
        element: String,
    },
}

impl BackoffError {
    /// 1-based position of the offending element.
    #[must_use]
    pub fn position(&self) -> usize {
        match self {
            BackoffError::EmptyElement { position }
            | BackoffError::NotANumber { position, .. }
            | BackoffError::Negative { position, .. }
            | BackoffError::TooLarge { position, .. } => *position,
        }
    }
}

impl fmt::Display for BackoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackoffError::EmptyElement { position } => write!(
                f,
                "element {position} is empty (expected a comma-separated list of seconds such as 5,30,60)"
            ),
            BackoffError::NotANumber { position, element } => write!(
                f,
                "element {position} ({element:?}) is not a number of seconds (use plain decimals such as 5 or 0.5)"
            ),
            BackoffError::Negative { position, element } => write!(
                f,
                "element {position} ({element:?}) is negative (waits are 0 or more seconds)"
            ),
            BackoffError::TooLarge { position, element } => write!(
                f,
                "element {position} ({element:?}) is more than one year ({MAX_WAIT_SECONDS} seconds)"
            ),
        }
    }
}

impl std::error::Error for BackoffError {}

/// Parses one trimmed element into milliseconds.
fn parse_element(position: usize, element: &str) -> Result<u64, BackoffError> {
    if element.is_empty() {
        return Err(BackoffError::EmptyElement { position });
    }
    let owned = || element.to_owned();
    if let Some(magnitude) = element.strip_prefix('-') {
        return Err(match Decimal::parse(magnitude) {
            Some(_) => BackoffError::Negative {
                position,
                element: owned(),
            },
            None => BackoffError::NotANumber {
                position,
                element: owned(),
            },
        });
    }
    let decimal = Decimal::parse(element).ok_or_else(|| BackoffError::NotANumber {
        position,
        element: owned(),
    })?;
    decimal.to_ms().ok_or_else(|| BackoffError::TooLarge {
        position,
        element: owned(),
    })
}

/// A non-negative decimal number as written: `digits[.digits]`.
struct Decimal<'a> {
    whole: &'a str,
    fraction: &'a str,
}

impl<'a> Decimal<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (text, "0"),
        };
        let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        (all_digits(whole) && all_digits(fraction)).then_some(Decimal { whole, fraction })
    }

    /// Milliseconds rounded to the nearest (halves up), or `None` above
    /// [`MAX_WAIT_SECONDS`]. Exact decimal arithmetic, no floating point.
    fn to_ms(&self) -> Option<u64> {
        let whole = self.whole.trim_start_matches('0');
        // More than 20 digits cannot fit a u64, let alone one year.
        if whole.len() > 20 {
            return None;
        }
        let seconds: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let fraction_is_zero = self.fraction.bytes().all(|b| b == b'0');
        if seconds > MAX_WAIT_SECONDS || (seconds == MAX_WAIT_SECONDS && !fraction_is_zero) {
            return None;
        }
        Some(seconds * MS_PER_SECOND + self.rounded_fraction_ms())
    }

    /// The fraction in milliseconds (0..=1000) from its first four digits.
    fn rounded_fraction_ms(&self) -> u64 {
        let digit = |index: usize| {
            self.fraction
                .as_bytes()
                .get(index)
                .map_or(0, |b| u64::from(b - b'0'))
        };
        let ms = digit(0) * 100 + digit(1) * 10 + digit(2);
        ms + u64::from(digit(3) >= 5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ms(text: &str) -> Vec<u64> {
        BackoffSchedule::parse(text).unwrap().waits_ms().to_vec()
    }

    #[test]
    fn parses_the_reference_default() {
        assert_eq!(
            parse_ms("5,30,60,300,600"),
            [5_000, 30_000, 60_000, 300_000, 600_000]
        );
        assert_eq!(
            BackoffSchedule::parse("5,30,60,300,600").unwrap(),
            BackoffSchedule::default()
        );
    }

    #[test]
    fn trims_the_text_and_each_element() {
        assert_eq!(parse_ms("  5, 30 ,\t60  "), [5_000, 30_000, 60_000]);
    }

    #[test]
    fn empty_or_blank_text_is_an_empty_schedule() {
        for text in ["", "   ", "\t\n"] {
            let schedule = BackoffSchedule::parse(text).unwrap();
            assert!(schedule.is_empty());
            assert_eq!(schedule.len(), 0);
            assert_eq!(schedule.wait_before_retry(1), None);
        }
    }

    #[test]
    fn accepts_decimal_seconds_rounded_to_the_millisecond() {
        assert_eq!(parse_ms("0.2"), [200]);
        assert_eq!(parse_ms("1.5"), [1_500]);
        assert_eq!(parse_ms("0.0004"), [0]);
        assert_eq!(parse_ms("0.0005"), [1]);
        assert_eq!(parse_ms("0.9996"), [1_000]);
        assert_eq!(parse_ms("2.123456789"), [2_123]);
        assert_eq!(parse_ms("0"), [0]);
        assert_eq!(parse_ms("0.0"), [0]);
        assert_eq!(parse_ms("007"), [7_000]);
    }

    #[test]
    fn accepts_exactly_one_year() {
        assert_eq!(parse_ms("31536000"), [31_536_000_000]);
        assert_eq!(parse_ms("31536000.000"), [31_536_000_000]);
    }

    #[test]
    fn rejects_empty_elements_with_their_position() {
        for (text, position) in [("5,,30", 2), ("5,", 2), (",5", 1), ("5, ,30", 2)] {
            assert_eq!(
                BackoffSchedule::parse(text),
                Err(BackoffError::EmptyElement { position }),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_non_numbers() {
        for element in [
            "abc", "1e3", "+5", "5s", ".5", "5.", "1.2.3", "NaN", "inf", "Infinity", "0x10", "5 6",
            "-", "-abc", "١",
        ] {
            let text = format!("1,{element}");
            assert_eq!(
                BackoffSchedule::parse(&text),
                Err(BackoffError::NotANumber {
                    position: 2,
                    element: element.to_owned()
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_negatives() {
        for element in ["-1", "-0.5", "-0"] {
            assert_eq!(
                BackoffSchedule::parse(element),
                Err(BackoffError::Negative {
                    position: 1,
                    element: element.to_owned()
                })
            );
        }
    }

    #[test]
    fn rejects_more_than_a_year() {
        for element in [
            "31536001",
            "31536000.001",
            "31536000.0001",
            "99999999999999999999999999",
        ] {
            assert_eq!(
                BackoffSchedule::parse(element),
                Err(BackoffError::TooLarge {
                    position: 1,
                    element: element.to_owned()
                })
            );
        }
    }

    #[test]
    fn errors_name_the_element_and_its_position() {
        let error = BackoffSchedule::parse("5,30,abc").unwrap_err();
        assert_eq!(error.position(), 3);
        let message = error.to_string();
        assert!(message.contains("element 3"), "{message}");
        assert!(message.contains("\"abc\""), "{message}");
        let message = BackoffSchedule::parse("5,,1").unwrap_err().to_string();
        assert!(message.contains("element 2 is empty"), "{message}");
        let message = BackoffSchedule::parse("-3").unwrap_err().to_string();
        assert!(message.contains("negative"), "{message}");
        let message = BackoffSchedule::parse("1,99999999")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("element 2") && message.contains("one year"),
            "{message}"
        );
    }

    #[test]
    fn wait_before_retry_is_one_based() {
        let schedule = BackoffSchedule::parse("5,30,0.2").unwrap();
        assert_eq!(schedule.wait_before_retry(0), None);
        assert_eq!(schedule.wait_before_retry(1), Some(5_000));
        assert_eq!(schedule.wait_before_retry(2), Some(30_000));
        assert_eq!(schedule.wait_before_retry(3), Some(200));
        assert_eq!(schedule.wait_before_retry(4), None);
        assert_eq!(schedule.wait_before_retry(u32::MAX), None);
    }

    #[test]
    fn displays_as_seconds_and_round_trips() {
        assert_eq!(BackoffSchedule::default().to_string(), "5,30,60,300,600");
        let schedule = BackoffSchedule::from_waits_ms(vec![5_000, 30_000, 200, 1_050, 1, 0]);
        assert_eq!(schedule.to_string(), "5,30,0.2,1.05,0.001,0");
        assert_eq!(BackoffSchedule::parse(&schedule.to_string()), Ok(schedule));
        assert_eq!(BackoffSchedule::from_waits_ms(Vec::new()).to_string(), "");
        assert_eq!(
            BackoffSchedule::parse(&BackoffSchedule::from_waits_ms(Vec::new()).to_string()),
            Ok(BackoffSchedule::from_waits_ms(Vec::new()))
        );
    }
}
