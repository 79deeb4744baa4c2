//! Kubernetes quantities (`500m`, `16Gi`, `1e3`) as numbers.

/// The largest value a Kubernetes quantity holds, 2^63 - 1: the API server reads larger
/// ones as this.
pub const MAX_QUANTITY: f64 = i64::MAX as f64;

/// The value of a non-negative Kubernetes quantity: a decimal number with an optional
/// suffix (`m`, `k`, `M`, `G`, `T`, `P`, `E`, `Ki` .. `Ei`) or exponent; `None` when `s`
/// is not one. Larger values than [`MAX_QUANTITY`] read as it, as the API server reads
/// them.
///
/// ```
/// use hollow_core::quantity::{MAX_QUANTITY, parse_quantity};
///
/// assert_eq!(parse_quantity("250m"), Some(0.25));
/// assert_eq!(parse_quantity("16Mi"), Some(16.0 * 1024.0 * 1024.0));
/// assert_eq!(parse_quantity("-1"), None);
/// assert_eq!(parse_quantity("1e400"), Some(MAX_QUANTITY));
/// assert_eq!(parse_quantity("0e400"), Some(0.0));
/// ```
pub fn parse_quantity(s: &str) -> Option<f64> {
    let value = unclamped(s)?;
    // 0 times an exponent too large for an f64 (0e400) is NaN: it is 0.
    Some(if value.is_nan() {
        0.0
    } else {
        value.min(MAX_QUANTITY)
    })
}

fn unclamped(s: &str) -> Option<f64> {
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    if number.is_empty()
        || number.matches('.').count() > 1
        || !number.contains(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let binary = |power: i32| Some(value * 1024f64.powi(power));
    let decimal = |power: i32| Some(value * 10f64.powi(power));
    match suffix {
        "" => Some(value),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        _ if suffix.starts_with(['e', 'E']) => {
            let exponent: i32 = suffix[1..].parse().ok()?;
            decimal(exponent)
        }
        _ => None,
    }
}

/// Whether `s` is a non-negative Kubernetes quantity (see [`parse_quantity`]). The node
/// builder refuses capacities that are not.
///
/// ```
/// use hollow_core::quantity::is_quantity;
///
/// assert!(is_quantity("16Gi") && is_quantity("500m"));
/// assert!(!is_quantity("-1") && !is_quantity("lots"));
/// ```
pub fn is_quantity(s: &str) -> bool {
    parse_quantity(s).is_some()
}
